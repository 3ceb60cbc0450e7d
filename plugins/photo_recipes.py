"""Shared starting points for the built-in photo domains (MobileNet fine-tuning).

Not a plugin itself: the domain plugins import these and adjust them.
"""

from __future__ import annotations

from tagteller import Phase, Recipe, TargetPlateauPolicy

#: MobileNet v1, alpha 0.25: ImageNet weights are available offline here, 218k parameters,
#: fast on a CPU. Head first, then the top blocks, then more of the network.
MOBILENET_025 = Recipe(
    backbone="MobileNet",
    backbone_options={"alpha": 0.25},
    weights="imagenet",
    input_size=(160, 160),
    dropout=0.3,
    batch_size=32,
    phases=(
        Phase("head", unfreeze=0, learning_rate=2e-3, epochs=12),
        Phase("top-blocks", unfreeze=3, learning_rate=3e-4, epochs=12),
        Phase("deeper", unfreeze=7, learning_rate=1e-4, epochs=10),
    ),
    schedule="plateau",
    label_smoothing=0.1,
)

#: The original project's policy: stop at 85% validation accuracy, move on after a plateau.
PHOTO_STOPPING = TargetPlateauPolicy(target_accuracy=None, patience=4, min_delta=0.005,
                                     on_plateau="next_phase", max_epochs=34, time_budget_s=30 * 60)
