"""tagteller plugin: the ``leaves`` domain (leaf colour), with its model shipped in the package."""

from pathlib import Path

import tagteller
from tagteller import Domain, FolderLayout, Phase, Recipe, TargetPlateauPolicy

HERE = Path(__file__).parent


@tagteller.hookimpl
def register_domains(register):
    register(
        Domain(
            name="leaves",
            description="Leaf colour: green, yellow or red.",
            labels=("green", "yellow", "red"),
            layout=FolderLayout(),  # training data: root/<label>/*.jpg
            recipe=Recipe(backbone="cnn", weights=None, input_size=(64, 64),
                          phases=(Phase("scratch", unfreeze="all", learning_rate=1e-3, epochs=20),)),
            stopping=TargetPlateauPolicy(target_accuracy=0.9, patience=3),
            model_path=HERE / "leaves.onnx",  # train it with: tagteller train --domain leaves DATA
        )
    )
