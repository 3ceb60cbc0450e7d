"""Built-in domain ``apparel``: the garment type, trained on Fashion-MNIST.

Fashion-MNIST images are 28x28 grayscale, a product centred on a black background. A real photo
of a shirt on a white table is made to look like that by the preprocessing recorded in the model:
grayscale, invert when the border is light, trim to the object, pad to a square, resize to 28.
"""

from __future__ import annotations

import tagteller
from tagteller import Domain, IdxLayout, Phase, Preprocessing, Recipe, TargetPlateauPolicy
from tagteller_models import shipped_model

#: Fashion-MNIST class order (label numbers 0..9), with path-safe names.
LABELS = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)

DOMAIN = Domain(
    name="apparel",
    description="Garment type from a photo (the 10 Fashion-MNIST classes).",
    labels=LABELS,
    layout=IdxLayout(class_names=LABELS, prefix="train"),
    recipe=Recipe(
        backbone="cnn",
        # Inside the 20-minute budget on two CPU cores: one 3x3 convolution in the first and last
        # blocks and two in the middle one (15 M multiply-adds per image, ~13 epochs), and a
        # flattened 3x3x128 map instead of global pooling, so the head knows where each feature
        # is (sleeves, collars, a bag's handle).
        backbone_options={"filters": [32, 64, 128], "convs_per_block": [1, 2, 1], "block_dropout": 0.0},
        weights=None,
        input_size=(28, 28),
        preprocessing=Preprocessing(color_mode="L", invert="auto", trim=True, resize="pad", background="white"),
        pooling="flatten",
        dropout=0.1,
        dense_units=128,
        batch_size=128,
        augmentation={"flip": True, "rotation": 0.0, "zoom": 0.0, "contrast": 0.0, "erasing": 0.0},
        phases=(Phase("scratch", unfreeze="all", learning_rate=3e-3, epochs=30),),
        schedule="cosine",
        label_smoothing=0.05,
        test_time_flip=True,  # a garment and its mirror image are the same garment
        val_fraction=1 / 6,  # 10,000 validation images, like the official test split's size
    ),
    # The epochs get 18.5 minutes; decoding the idx files and the export fit in the rest of 20.
    stopping=TargetPlateauPolicy(target_accuracy=None, patience=4, min_delta=0.001, on_plateau="stop",
                                 max_epochs=30, time_budget_s=18.5 * 60),
    model_path=shipped_model("apparel"),
    data_source="Fashion-MNIST (Zalando Research, MIT): train-images/labels idx files",
)


@tagteller.hookimpl
def register_domains(register):
    register(DOMAIN)
