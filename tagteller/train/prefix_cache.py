"""Frozen-prefix caching: fine-tune the top blocks of a pretrained backbone on features computed once.

When no phase of a recipe unfreezes more than the top N blocks of a pretrained backbone, the
layers below them stay frozen and in inference mode for the whole run, so what they make of a
given image never changes. With ``Recipe.cached_views = V`` training therefore:

1. splits the classifier at the input of the lowest block any phase unfreezes
   (:func:`split_layer`) into a *prefix* (pixels -> that tensor) and a *suffix* (that tensor ->
   probabilities) that **shares its layers** with the classifier (:func:`build_suffix`);
2. runs the prefix once, with onnxruntime (exported by the same ``tf2onnx`` path as every
   model), over V copies of each training image: view 0 as it is, views 1..V-1 through the
   recipe's augmentation (:func:`cache_features`), and over the validation images as they are;
3. trains the suffix: each epoch draws one of the V views of every training image at random
   (:func:`feature_dataset`).

The classifier holds the trained weights (the layers are shared), so it is what the loop saves
and what is exported: the shipped model takes pixels like any other. On 2 CPU cores this turns
EfficientNet-Lite0 fine-tuning from about 12 images/s (top 4 blocks through the whole network)
into about 100 images/s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from tagteller.domain import Recipe
from tagteller.errors import TagtellerError
from tagteller.train.backbones import block_keys, check_backbone, ordered_blocks
from tagteller.train.model import backbone_of

#: Images per onnxruntime call while caching.
CACHE_BATCH = 32


def deepest_unfreeze(recipe: Recipe) -> int:
    """The most top blocks any phase unfreezes (``"all"`` cannot be cached)."""
    depths = [phase.unfreeze for phase in recipe.phases]
    if "all" in depths:
        raise TagtellerError("cached_views needs every phase to unfreeze a block count, not 'all'")
    return max(int(d) for d in depths)


def split_layer(model: keras.Model, recipe: Recipe) -> str:
    """The name of the first backbone layer of the lowest block any phase unfreezes (its input
    is where the prefix ends); with head-only phases, the backbone's last layer's successor:
    the whole backbone is the prefix (the name ``""`` says so)."""
    backbone = backbone_of(model)
    keys = block_keys(backbone, check_backbone(recipe.backbone))
    blocks = ordered_blocks(keys)
    depth = deepest_unfreeze(recipe)
    if depth == 0:
        return ""
    if depth >= len(blocks):
        raise TagtellerError(f"cached_views: a phase unfreezes {depth} blocks but {recipe.backbone} has {len(blocks)}")
    lowest = blocks[len(blocks) - depth]
    for layer, key in zip(backbone.layers, keys):
        if key == lowest:
            return layer.name
    raise TagtellerError(f"cached_views: no layer of block {lowest!r}")  # unreachable: blocks come from keys


def _split_tensor(backbone: keras.Model, first: str) -> Any:
    return backbone.output if not first else backbone.get_layer(first).input


def build_prefix(model: keras.Model, first: str) -> keras.Model:
    """Pixels (as the classifier takes them) to the split tensor, sharing the classifier's layers."""
    backbone = backbone_of(model)
    inner = keras.Model(backbone.input, _split_tensor(backbone, first), name="prefix_backbone")
    inputs = keras.Input(model.input_shape[1:], name=model.inputs[0].name, dtype="float32")
    x = inputs
    for layer in model.layers[1:]:
        if layer is backbone:
            break
        x = layer(x)
    return keras.Model(inputs, inner(x, training=False), name="prefix")


def build_suffix(model: keras.Model, first: str) -> keras.Model:
    """The split tensor to probabilities: the unfrozen top of the backbone (a sub-model named
    ``backbone``, so that :func:`~tagteller.train.model.set_unfrozen` works on it; an empty one
    when every phase trains the head alone) and the head."""
    backbone = backbone_of(model)
    split = _split_tensor(backbone, first)
    inputs = keras.Input(tuple(split.shape[1:]), name="features", dtype="float32")
    if first:
        top = keras.Model(split, backbone.output, name="backbone")
    else:  # head-only phases: an empty ``backbone`` (no block to unfreeze), so the loop works as usual
        top = keras.Model(inputs, inputs, name="backbone")
    x = top(inputs, training=False)
    after = model.layers[model.layers.index(backbone) + 1:]
    for layer in after:
        x = layer(x)
    return keras.Model(inputs, x, name=f"{model.name}_suffix")


def cache_features(prefix: keras.Model, images: np.ndarray, views: int, augmentation: dict[str, Any],
                   seed: int, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The prefix's outputs, float32 ``(views, N, ...)``: view 0 for the images as they are,
    the others for augmented copies (the recipe's augmentation, seeded per view)."""
    import onnxruntime as ort

    from tagteller.train.export import to_onnx
    from tagteller.train.pipeline import build_augmenter

    height, width, channels = prefix.input_shape[1:]
    proto = to_onnx(prefix, (height, width), channels)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out: np.ndarray | None = None
    for view in range(views):
        augment = build_augmenter(augmentation, seed + 7919 * view) if view else None
        for start in range(0, len(images), CACHE_BATCH):
            batch = images[start:start + CACHE_BATCH]
            batch = np.asarray(augment(batch), np.float32) if augment is not None else batch.astype(np.float32)
            features = session.run(None, {name: batch})[0]
            if out is None:
                out = np.empty((views, len(images), *features.shape[1:]), np.float32)
            out[view, start:start + len(batch)] = features
            if progress is not None:
                progress(view * len(images) + start + len(batch), views * len(images))
    if out is None:
        raise TagtellerError("cache_features: no images")
    return out


def feature_dataset(features: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int, seed: int):
    """Training batches of cached features: shuffled each epoch, one random view per image."""
    import tensorflow as tf

    views = features.shape[0]
    table = tf.constant(features)

    def gather(index, label):
        view = tf.random.uniform(tf.shape(index), 0, views, dtype=tf.int32, seed=seed)
        return tf.gather_nd(table, tf.stack([view, tf.cast(index, tf.int32)], axis=1)), tf.one_hot(label, num_classes)

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(labels)), labels))
    ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True).batch(batch_size).map(gather)
    return ds.prefetch(tf.data.AUTOTUNE)


def evaluation_features(features: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int):
    """Validation batches of cached (unaugmented) features, in order."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((features, tf.one_hot(labels, num_classes)))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
