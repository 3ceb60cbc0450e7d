#!/usr/bin/env python
"""What the seed projects did, as a script the benchmarks time: TensorFlow + Keras ``predict``.

Not tagteller: this is the baseline. It imports tensorflow, loads the ``.keras`` model, and uses
Keras' own image loading (``load_img(target_size=...)`` + ``img_to_array``), as the seed notebooks
did. Two modes:

- ``one MODEL.keras PHOTO``: classify one photo and print the label, as a whole process (the cold
  start benchmark times and measures the process from outside);
- ``folder MODEL.keras DIR --batch 32``: classify every photo in a folder with ``load_img`` and
  batched ``model.predict``; prints one JSON line with the pipeline's own timing (from the first
  ``load_img`` to the last prediction, after one untimed ``predict`` that traces the model, so
  tensorflow's import, the model load and the tracing are *not* counted: the figure favours
  Keras).

The model's custom layers (pixel scaling) are registered by importing
``tagteller.train.backbones``, which the ``.keras`` file needs to load; that is the only tagteller
import here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("one", "folder"))
    p.add_argument("model", type=Path)
    p.add_argument("input", type=Path)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--labels", default="adidas,converse,nike")
    args = p.parse_args()

    import numpy as np
    import tensorflow as tf

    import tagteller.train.backbones  # noqa: F401 - registers the model's custom layers

    model = tf.keras.models.load_model(args.model, compile=False)
    height, width = model.input_shape[1:3]
    labels = args.labels.split(",")
    load_img, img_to_array = tf.keras.utils.load_img, tf.keras.utils.img_to_array

    if args.mode == "one":
        img = load_img(args.input, target_size=(height, width))
        batch = np.expand_dims(img_to_array(img), 0)
        probs = model.predict(batch, verbose=0)[0]
        print(f"{args.input}: {labels[int(np.argmax(probs))]} {float(np.max(probs)):.2f}")
        return 0

    files = sorted(f for f in args.input.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    model.predict(np.zeros((args.batch, height, width, 3), np.float32), verbose=0)  # tracing, not timed
    start = time.perf_counter()
    top: list[int] = []
    for i in range(0, len(files), args.batch):
        batch = np.stack([img_to_array(load_img(f, target_size=(height, width))) for f in files[i:i + args.batch]])
        top += np.argmax(model.predict(batch, verbose=0), axis=1).tolist()
    seconds = time.perf_counter() - start
    print(json.dumps({"images": len(files), "seconds": seconds, "images_per_s": len(files) / seconds,
                      "top1": {f.relative_to(args.input).as_posix(): int(t) for f, t in zip(files, top)}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
