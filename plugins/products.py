"""Built-in domain ``products``: a shop product's category (imbalanced classes)."""

from __future__ import annotations

import tagteller
from tagteller import Domain, FolderLayout
from tagteller_models import shipped_model
from tagteller_plugins.photo_recipes import LITE0, PHOTO_STOPPING

DOMAIN = Domain(
    name="products",
    description="Product category from a shop photo: accessories, fashion or nutrition.",
    labels=("accessories", "fashion", "nutrition"),
    layout=FolderLayout(),
    recipe=LITE0.with_(class_weights="auto"),
    stopping=PHOTO_STOPPING,
    model_path=shipped_model("products"),
    data_source="'Slash' app product photos (MoYasser1777, mohamedtag04; MIT where stated)",
)


@tagteller.hookimpl
def register_domains(register):
    register(DOMAIN)
