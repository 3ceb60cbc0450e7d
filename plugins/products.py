"""Built-in domain ``products``: a shop product's category (imbalanced classes)."""

from __future__ import annotations

import tagteller
from tagteller import Domain, FolderLayout
from tagteller_models import shipped_model
from tagteller_plugins.photo_recipes import LITE1, PHOTO_STOPPING

DOMAIN = Domain(
    name="products",
    description="Product category from a shop photo: accessories, fashion or nutrition.",
    labels=("accessories", "fashion", "nutrition"),
    # Its two sources share photos (the shop's picture and a crop of an app screenshot of it):
    # near-duplicates stay on one side of the split, at the distance its holdout was made with.
    layout=FolderLayout(near_duplicates=26),
    # Lite1 at 240 px: 96% over repeated splits against Lite0's 93% (docs/training.md).
    recipe=LITE1.with_(class_weights="auto"),
    stopping=PHOTO_STOPPING,
    model_path=shipped_model("products"),
    data_source="'Slash' app product photos (MoYasser1777, mohamedtag04; MIT where stated)",
)


@tagteller.hookimpl
def register_domains(register):
    register(DOMAIN)
