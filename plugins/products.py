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
    # Its two sources share photos (the shop's picture and a crop of an app screenshot of it):
    # near-duplicates stay on one side of the split, at the distance its holdout was made with.
    layout=FolderLayout(near_duplicates=26),
    # Over 5 near-duplicate-grouped splits Lite0 and Lite1 (240 px) tie at 88.8% top-1; Lite0
    # has the better balanced accuracy (88.6% against 86.7%) at two thirds of the compute
    # (docs/training.md).
    recipe=LITE0.with_(class_weights="auto"),
    stopping=PHOTO_STOPPING,
    model_path=shipped_model("products"),
    data_source="'Slash' app product photos (MoYasser1777, mohamedtag04; MIT where stated)",
)


@tagteller.hookimpl
def register_domains(register):
    register(DOMAIN)
