"""Built-in domain ``trousers``: trousers or jeans, cut for men or women, from a catalogue photo.

Trained on 859 Myntra catalogue photos (60x80 px studio shots of a model's legs; imbalanced, 342
to 76 images per class), so the model expects a product photo of one pair, worn or laid flat.
"""

from __future__ import annotations

import tagteller
from tagteller import Domain, FolderLayout
from tagteller_models import shipped_model
from tagteller_plugins.photo_recipes import LITE0, PHOTO_STOPPING

DOMAIN = Domain(
    name="trousers",
    description="Trousers or jeans, cut for men or women, from a product photo of one pair (worn or laid flat).",
    labels=("male-trousers", "male-jeans", "female-trousers", "female-jeans"),
    layout=FolderLayout(),
    # Mirrored trousers are still trousers; class weights for the imbalance (342 to 76 images).
    recipe=LITE0.with_(class_weights="auto"),
    stopping=PHOTO_STOPPING,
    model_path=shipped_model("trousers"),
    data_source="Myntra catalogue photos via Kaggle 'Fashion Product Images (Small)' (licence unknown: research use)",
)


@tagteller.hookimpl
def register_domains(register):
    register(DOMAIN)
