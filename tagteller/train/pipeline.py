"""The training input pipeline: decode once, keep in memory, then ``tf.data`` for every epoch.

1. :func:`tagteller.sample_decoding.decode_samples` (no tensorflow) decodes every sample once,
   with the engine's own :func:`tagteller.imaging.prepare`, into one uint8 array.
2. :func:`training_dataset`: shuffle each epoch, batch, augment (training only: contrast, then
   flip, rotation and zoom composed into one warp per image, then random erasing), one-hot,
   prefetch.
   :func:`evaluation_dataset`: the same without shuffling and augmentation. Augmentation is
   applied here, in the input pipeline, and so is never part of the exported model.
3. :func:`class_weights`: balanced weights when the classes are imbalanced.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from tagteller.sample_decoding import DecodedImages

#: Classes count as imbalanced (and get balanced weights under ``class_weights="auto"``) when the
#: largest has this many times the images of the smallest.
IMBALANCE_RATIO = 1.5


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> dict[int, float] | None:
    """Balanced weights ``n / (k * count)`` when ``mode == "auto"`` and the classes present are
    imbalanced (largest / smallest > :data:`IMBALANCE_RATIO`); otherwise None."""
    if mode != "auto" or len(labels) == 0:
        return None
    counts = np.bincount(labels, minlength=num_classes)
    present = counts[counts > 0]
    if present.max() <= IMBALANCE_RATIO * present.min():
        return None
    total, k = counts.sum(), len(present)
    return {i: (float(total / (k * c)) if c else 1.0) for i, c in enumerate(counts)}


def random_erasing(images, probability: float):
    """Per image, with ``probability``: set a random rectangle (2-25% of the area, aspect 0.3-3.3)
    to that image's mean colour. ``images`` is a float batch ``(B, H, W, C)``."""
    import tensorflow as tf

    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    hf, wf = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    area = tf.random.uniform([batch], 0.02, 0.25)
    ratio = tf.exp(tf.random.uniform([batch], math.log(0.3), math.log(1 / 0.3)))
    eh = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area * ratio) * hf), tf.int32), 1, height)
    ew = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area / ratio) * wf), tf.int32), 1, width)
    y0 = tf.cast(tf.floor(tf.random.uniform([batch]) * tf.cast(height - eh + 1, tf.float32)), tf.int32)
    x0 = tf.cast(tf.floor(tf.random.uniform([batch]) * tf.cast(width - ew + 1, tf.float32)), tf.int32)
    rows = tf.range(height)[None, :]
    cols = tf.range(width)[None, :]
    in_rows = (rows >= y0[:, None]) & (rows < (y0 + eh)[:, None])
    in_cols = (cols >= x0[:, None]) & (cols < (x0 + ew)[:, None])
    chosen = tf.random.uniform([batch]) < probability
    mask = in_rows[:, :, None] & in_cols[:, None, :] & chosen[:, None, None]
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return tf.where(mask[..., None], tf.broadcast_to(mean, shape), images)


def warp_matrices(flip, angle, scale, height, width):
    """Per image, the projective transform (8 numbers, ``ImageProjectiveTransformV3``'s form) that
    maps an output pixel to where it is read in the input: a horizontal flip where ``flip`` is
    true, a rotation by ``angle`` radians and a scaling by ``scale`` (> 1 shows more of the image,
    like zooming out), all about the image centre. Flip, rotation and zoom become one resampling
    instead of three."""
    import tensorflow as tf

    cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
    cx = (tf.cast(width, tf.float32) - 1.0) / 2.0
    sign = tf.where(flip, -1.0, 1.0)
    cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
    # input = A (output - centre) + centre, with A = scale * rotation * flip.
    a00, a01 = cos * sign, -sin
    a10, a11 = sin * sign, cos
    tx = cx - a00 * cx - a01 * cy
    ty = cy - a10 * cx - a11 * cy
    zeros = tf.zeros_like(angle)
    return tf.stack([a00, a01, tx, a10, a11, ty, zeros, zeros], axis=1)


@functools.cache
def _contrast_scaler():
    """Each image's distance from its per-channel mean times a factor, clipped to [0, 255];
    compiled with XLA, which fuses the four elementwise passes into one (2.4x faster here)."""
    import tensorflow as tf

    def scale(images, factors):
        mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
        return tf.clip_by_value((images - mean) * factors + mean, 0.0, 255.0)

    return tf.function(scale, jit_compile=True, reduce_retracing=True)


def build_augmenter(augmentation: dict[str, float | bool], seed: int | None = None):
    """A function ``batch -> augmented float32 batch`` for the recipe's augmentation, or None
    when it asks for none. The batch is uint8 (as the pipeline holds images) or float in
    [0, 255]; pixels stay within [0, 255].

    In order: contrast scales each image's distance from its per-channel mean by a factor in
    ``1 +- contrast``; flip, rotation (a fraction of a full turn, either way) and zoom (a
    fraction of the size, in or out) are composed into one warp per image, so each image is
    resampled once (bilinear, edges repeated), and a flip alone is a plain mirror; random
    erasing comes last."""
    import tensorflow as tf

    flip = bool(augmentation.get("flip"))
    rotation = float(augmentation.get("rotation", 0) or 0)
    zoom = float(augmentation.get("zoom", 0) or 0)
    contrast = float(augmentation.get("contrast", 0) or 0)
    erasing = float(augmentation.get("erasing", 0) or 0)
    if not (flip or rotation > 0 or zoom > 0 or contrast > 0 or erasing > 0):
        return None
    # One op seed per random draw: draws seeded alike would be the same numbers.
    flip_seed, angle_seed, zoom_seed, contrast_seed = range(seed, seed + 4) if seed is not None else (None,) * 4
    warp = rotation > 0 or zoom > 0

    def augment(batch):
        shape = tf.shape(batch)
        n, height, width = shape[0], shape[1], shape[2]
        if contrast > 0:
            factor = tf.random.uniform([n, 1, 1, 1], 1.0 - contrast, 1.0 + contrast, seed=contrast_seed)
            batch = _contrast_scaler()(tf.cast(batch, tf.float32), factor)
        # Then geometry; bilinear interpolation stays within the input's range. (A flip alone
        # mirrors the uint8 batch: a quarter of the bytes of float32 to move.)
        if warp:
            flips = (tf.random.uniform([n], seed=flip_seed) < 0.5) if flip else tf.zeros([n], tf.bool)
            turn = 2.0 * math.pi * rotation
            angle = tf.random.uniform([n], -turn, turn, seed=angle_seed)
            scale = tf.random.uniform([n], 1.0 - zoom, 1.0 + zoom, seed=zoom_seed)
            batch = tf.raw_ops.ImageProjectiveTransformV3(
                images=tf.cast(batch, tf.float32), transforms=warp_matrices(flips, angle, scale, height, width),
                output_shape=tf.stack([height, width]), fill_value=0.0,
                interpolation="BILINEAR", fill_mode="NEAREST")
        elif flip:
            mirrored = tf.random.uniform([n], seed=flip_seed) < 0.5
            batch = tf.where(mirrored[:, None, None, None], tf.reverse(batch, axis=[2]), batch)
        batch = tf.cast(batch, tf.float32)
        if erasing > 0:
            batch = random_erasing(batch, erasing)  # fills with the image's mean: within range
        return batch

    return augment


def training_dataset(decoded: DecodedImages, num_classes: int, batch_size: int,
                     augmentation: dict[str, float | bool], seed: int):
    """Shuffled (anew each epoch), augmented, one-hot, batched, prefetched ``tf.data`` pipeline."""
    import tensorflow as tf

    augment = build_augmenter(augmentation, seed)

    def prepare_batch(images, labels):
        images = augment(images) if augment is not None else tf.cast(images, tf.float32)
        return images, tf.one_hot(labels, num_classes)

    ds = tf.data.Dataset.from_tensor_slices((decoded.images, decoded.labels))
    ds = ds.shuffle(len(decoded), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(prepare_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(decoded: DecodedImages, num_classes: int, batch_size: int):
    """The validation pipeline: no shuffling, no augmentation."""
    import tensorflow as tf

    def prepare_batch(images, labels):
        return tf.cast(images, tf.float32), tf.one_hot(labels, num_classes)

    ds = tf.data.Dataset.from_tensor_slices((decoded.images, decoded.labels))
    return ds.batch(batch_size).map(prepare_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
