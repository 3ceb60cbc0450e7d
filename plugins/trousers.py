"""Built-in domain ``trousers``: cut and fit of trousers. Recipe and layout only: no data here,
so no model ships; train one with ``tagteller train --domain trousers DATA``."""

from __future__ import annotations

import tagteller
from tagteller import Domain, SplitFolderLayout
from tagteller_plugins.photo_recipes import MOBILENET_025, PHOTO_STOPPING

DOMAIN = Domain(
    name="trousers",
    description="Trousers or jeans, cut for men or women.",
    labels=("male-trousers", "male-jeans", "female-trousers", "female-jeans"),
    layout=SplitFolderLayout(),
    recipe=MOBILENET_025,
    stopping=PHOTO_STOPPING,
    model_path=None,
    data_source="none bundled: bring root/train|val/<label>/ photos",
)


@tagteller.hookimpl
def register_domains(register):
    register(DOMAIN)
