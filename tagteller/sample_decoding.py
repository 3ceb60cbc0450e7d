"""Decoding labelled samples once, into one uint8 array: what training, the open-set fit and
the benchmarks feed on (no tensorflow).

:func:`decode_samples` decodes every sample in parallel threads with
:func:`tagteller.imaging.prepare`, the very function the ONNX engine uses, so training and
inference see identical pixels. An image that fails (:class:`~tagteller.errors.ImageError`) is
skipped and counted with its reason; the rest carry on. The decoded images are kept as one uint8
array: tagteller's datasets are small (60,000 28x28 images are 47 MB).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from tagteller.datasets import Sample
from tagteller.errors import ImageError
from tagteller.imaging import prepare
from tagteller.preprocessing import Preprocessing


@dataclass
class DecodedImages:
    """Decoded samples: ``images`` uint8 ``(N, H, W, C)``, ``labels`` class indices, ``keys``;
    ``failures`` lists ``(key, reason)`` for the samples that could not be decoded."""

    images: np.ndarray
    labels: np.ndarray
    keys: list[str]
    failures: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)


def decode_samples(samples: Sequence[Sample], label_index: dict[str, int], size: tuple[int, int],
                   pre: Preprocessing, workers: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> DecodedImages:
    """Decode ``samples`` in a thread pool (Pillow releases the GIL while decoding)."""
    height, width = size
    out = np.zeros((len(samples), height, width, pre.channels), dtype=np.uint8)
    ok = np.zeros(len(samples), dtype=bool)
    failures: list[tuple[str, str]] = []

    def decode(i: int) -> tuple[int, str | None]:
        try:
            pixels = prepare(samples[i].source, size, pre)
        except ImageError as exc:
            return i, str(exc)
        out[i] = pixels.astype(np.uint8)  # prepare's values are whole numbers in [0, 255]
        return i, None

    with ThreadPoolExecutor(max_workers=workers or max(1, os.cpu_count() or 1),
                            thread_name_prefix="tagteller-train-decode") as pool:
        for done, (i, error) in enumerate(pool.map(decode, range(len(samples)), chunksize=64), start=1):
            if error is None:
                ok[i] = True
            else:
                failures.append((samples[i].key, error))
            if progress is not None and (done % 512 == 0 or done == len(samples)):
                progress(done, len(samples))
    keep = np.flatnonzero(ok)
    labels = np.array([label_index[samples[int(i)].label] for i in keep], dtype=np.int32)
    return DecodedImages(out[keep], labels, [samples[int(i)].key for i in keep], failures)
