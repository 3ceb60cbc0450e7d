"""The classifier a recipe describes, how its phases unfreeze it, and its checkpoints.

The model takes float32 NHWC pixels in [0, 255] (named ``image``) and returns probabilities
(softmax in the graph, named ``probabilities``)::

    image -> [GrayToRGB] -> PixelScaling -> backbone -> pooling -> dropout -> [dense] -> softmax

A pretrained backbone is called with ``training=False``, and its BatchNorm layers are never
trainable, so they stay in inference mode in every phase (fine-tuning with few photos would
otherwise wreck their statistics). The custom ``cnn`` is trained from scratch: all of it is
trainable, BatchNorm included.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import keras
import numpy as np
from keras import layers

from tagteller.atomic import atomic_path
from tagteller.domain import Recipe
from tagteller.errors import TagtellerError
from tagteller.train.backbones import (
    CUSTOM_CNN,
    GrayToRGB,
    PixelScaling,
    WeightsChoice,
    block_keys,
    build_backbone,
    check_backbone,
    ordered_blocks,
    scaling_for,
)

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


def build_classifier(recipe: Recipe, num_classes: int, weights: WeightsChoice) -> keras.Model:
    """A fresh model for ``recipe`` with ``num_classes`` outputs."""
    height, width = recipe.input_size
    channels = recipe.preprocessing.channels
    inputs = keras.Input((height, width, channels), name=INPUT_NAME, dtype="float32")
    x = inputs
    pretrained = recipe.backbone != CUSTOM_CNN
    if pretrained and channels == 1:
        x = GrayToRGB(name="gray_to_rgb")(x)
    x = PixelScaling(scaling_for(recipe.backbone, recipe.backbone_options), name="pixel_scaling")(x)
    backbone_channels = 3 if pretrained else channels
    backbone = build_backbone(recipe.backbone, (height, width, backbone_channels), recipe.backbone_options, weights)
    x = backbone(x, training=False) if pretrained else backbone(x)
    pooling = {"avg": layers.GlobalAveragePooling2D, "max": layers.GlobalMaxPooling2D, "flatten": layers.Flatten}
    x = pooling[recipe.pooling](name="pool")(x)
    if recipe.dropout > 0:
        x = layers.Dropout(recipe.dropout, name="head_dropout")(x)
    if recipe.dense_units > 0:
        x = layers.Dense(recipe.dense_units, activation="relu", name="head_dense")(x)
        if recipe.dropout > 0:
            x = layers.Dropout(recipe.dropout, name="head_dense_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name=OUTPUT_NAME, dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"tagteller_{recipe.backbone.lower()}")


def with_test_time_flip(model: keras.Model) -> keras.Model:
    """``model`` answering with the mean of its probabilities for the image and its left-right
    mirror image (used at export when ``Recipe.test_time_flip`` is set; training never sees it)."""
    inputs = keras.Input(model.input_shape[1:], name=INPUT_NAME, dtype="float32")
    mirrored = layers.Lambda(lambda x: keras.ops.flip(x, axis=2), name="mirror")(inputs)
    outputs = layers.Average(name=OUTPUT_NAME)([model(inputs), model(mirrored)])
    return keras.Model(inputs, outputs, name=f"{model.name}_flip_averaged")


def backbone_of(model: keras.Model) -> keras.Model:
    try:
        return model.get_layer("backbone")
    except ValueError:
        raise TagtellerError(f"model {model.name!r} has no 'backbone' layer: not a tagteller checkpoint") from None


def backbone_block_count(model: keras.Model, recipe: Recipe) -> int:
    backbone = backbone_of(model)
    return len(ordered_blocks(block_keys(backbone, check_backbone(recipe.backbone))))


def set_unfrozen(model: keras.Model, recipe: Recipe, unfreeze: int | Literal["all"]) -> int:
    """Make the top ``unfreeze`` blocks of the backbone trainable (``"all"``: every block),
    BatchNorm excepted; the head is always trainable. Returns the number of trainable weights.

    The custom ``cnn`` is trained from scratch, so all of it is always trainable.
    """
    backbone = backbone_of(model)
    model.trainable = True
    if recipe.backbone == CUSTOM_CNN:
        return len(model.trainable_weights)
    keys = block_keys(backbone, check_backbone(recipe.backbone))
    blocks = ordered_blocks(keys)
    if unfreeze == "all":
        chosen = set(blocks)
    else:
        chosen = set(blocks[len(blocks) - unfreeze:]) if unfreeze > 0 else set()
    for layer, key in zip(backbone.layers, keys):
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
        else:
            layer.trainable = key in chosen
    return len(model.trainable_weights)


def compile_model(model: keras.Model, learning_rate: float, label_smoothing: float) -> None:
    """(Re)compile after a change of trainable layers: Adam, categorical cross-entropy."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
    )


def set_learning_rate(model: keras.Model, learning_rate: float) -> None:
    model.optimizer.learning_rate.assign(float(learning_rate))


def current_learning_rate(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def save_checkpoint(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Save ``model`` as a ``.keras`` file atomically: written once beside ``path``, then renamed
    over it (a kill mid-save leaves the old file whole)."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp, overwrite=True)


def load_checkpoint(path: str | os.PathLike[str]) -> keras.Model:
    """Load a ``.keras`` checkpoint written by :func:`save_checkpoint` (not compiled)."""
    path = Path(path)
    if not path.is_file():
        raise TagtellerError(f"{path}: checkpoint not found")
    try:
        return keras.models.load_model(path, compile=False)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        raise TagtellerError(f"{path}: cannot load this checkpoint ({exc.__class__.__name__}: {exc})") from None


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Keras' probabilities for uint8/float pixel arrays ``(N, H, W, C)``, in inference mode."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start:start + batch_size], dtype=np.float32)
        out.append(np.asarray(model(batch, training=False), dtype=np.float32))
    if not out:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return np.concatenate(out)
