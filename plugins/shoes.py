"""Built-in domain ``shoes``: the brand of a shoe from a product photo."""

from __future__ import annotations

import tagteller
from tagteller import Domain, FolderLayout, Phase
from tagteller_models import shipped_model
from tagteller_plugins.photo_recipes import MOBILENET_025, PHOTO_STOPPING

DOMAIN = Domain(
    name="shoes",
    description="Shoe brand from a product photo.",
    labels=("adidas", "converse", "nike"),
    layout=FolderLayout(),
    # Brand cues are small (a swoosh, three stripes): 224 px, the size the ImageNet weights were
    # trained at, then the whole network fine-tuned at a low rate, with random erasing so that no
    # single detail is relied on. Over three validation splits: 82.0% on average against 78.2%
    # for the 160 px, top-7-blocks recipe.
    recipe=MOBILENET_025.with_(
        input_size=(224, 224),
        augmentation={**MOBILENET_025.augmentation, "erasing": 0.2},
        phases=(
            Phase("head", unfreeze=0, learning_rate=2e-3, epochs=12),
            Phase("top-blocks", unfreeze=5, learning_rate=3e-4, epochs=12),
            Phase("all", unfreeze="all", learning_rate=1e-4, epochs=14),
        ),
    ),
    stopping=PHOTO_STOPPING,
    model_path=shipped_model("shoes"),
    data_source="Kaggle 'Nike, Adidas and Converse Shoes Images' via akkik04/Kutsu (research use)",
)


@tagteller.hookimpl
def register_domains(register):
    register(DOMAIN)
