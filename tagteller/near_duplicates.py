"""Near-duplicate photos of a class, kept on one side of a train/validation split.

A dataset merged from several sources often holds the same product photo twice: the shop's own
picture and a crop of an app screenshot of it, at another size and compression. Split at random,
one copy trains and the other validates, and the figure measures memory, not recognition
(``products``: 6 to 9 of 33 validation images had a near-twin in training; every one of them
was answered right, against 93.8% of the others).

A photo's *difference hash* (dHash: Krawetz, "Kind of like that", 2013) is the 16x16 grid of
"is this pixel brighter than its right neighbour" bits of a 17x16 greyscale thumbnail; two
photos whose hashes differ in at most ``max_distance`` of the 256 bits are near-duplicates.
:func:`group_near_duplicates` links the near-duplicates of each class into groups (transitively:
A~B and B~C put A, B and C together), which :func:`tagteller.datasets.stratified_split` keeps
whole. Samples that already have a group (a manifest's group column) keep theirs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image

    from tagteller.datasets import Sample

#: Thumbnail the hash is computed on (width, height): one more column than the hash is wide.
HASH_SIZE = (17, 16)


def difference_hash(sample: Sample) -> np.ndarray | None:
    """The 256 dHash bits of a sample's image (a file or an in-memory array), as booleans; None
    for a file that does not decode (training reports it later, as for any other bad file)."""
    from PIL import Image

    if sample.array is not None:
        image = Image.fromarray(np.asarray(sample.array).squeeze().astype(np.uint8))
        return _bits(image)
    assert sample.path is not None
    try:
        with Image.open(sample.path) as image:
            image.draft("L", (HASH_SIZE[0] * 4, HASH_SIZE[1] * 4))  # JPEG: decode small, far faster
            return _bits(image)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _bits(image: Image) -> np.ndarray:
    from PIL.Image import Resampling

    grey = np.asarray(image.convert("L").resize(HASH_SIZE, Resampling.BILINEAR), dtype=np.int16)
    return (grey[:, 1:] > grey[:, :-1]).ravel()


def group_near_duplicates(samples: Sequence[Sample], max_distance: int) -> list[Sample]:
    """``samples`` with ``group`` set so that near-duplicates of one label share a group
    (``near:<key of the group's first sample>``); a sample with no near-duplicate and no group
    of its own is returned as it was."""
    if max_distance < 0:
        raise ValueError("max_distance must be >= 0")
    out = list(samples)
    by_label: dict[str, list[int]] = {}
    for i, s in enumerate(out):
        by_label.setdefault(s.label, []).append(i)
    parent = list(range(len(out)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for labelled in by_label.values():
        hashed = [(i, difference_hash(out[i])) for i in labelled]
        members = [i for i, h in hashed if h is not None]
        if not members:
            continue
        hashes = np.stack([h for _i, h in hashed if h is not None])
        for a in range(len(members)):
            distances = (hashes[a + 1:] != hashes[a]).sum(axis=1)
            for b in np.nonzero(distances <= max_distance)[0]:
                ra, rb = root(members[a]), root(members[a + 1 + int(b)])
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    sizes: dict[int, int] = {}
    for i in range(len(out)):
        sizes[root(i)] = sizes.get(root(i), 0) + 1
    for i, s in enumerate(out):
        r = root(i)
        if sizes[r] > 1 and s.group is None:
            out[i] = dataclasses.replace(s, group=f"near:{out[r].key}")
    return out
