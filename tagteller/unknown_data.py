"""``--unknown-data``: photos that are *not* of the domain being trained, for its open-set gate.

A spec is ``DIR`` (every image below it) or ``DOMAIN=DIR`` (a dataset of another domain, read
with that domain's layout and split with that domain's recipe; only its **training side** is
used, so its validation images stay unseen by every model and can measure the unknown rate
honestly). Each source gives at most :data:`MAX_PER_SOURCE` images, a seeded random choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tagteller.datasets import Sample, stratified_split
from tagteller.errors import TagtellerError
from tagteller.preprocessing import Preprocessing

#: Enough for every built-in dataset's whole training side (the gate fits better on more).
MAX_PER_SOURCE = 2000
UNKNOWN = "unknown"


def parse_spec(text: str) -> tuple[str | None, Path]:
    """``DIR`` or ``DOMAIN=DIR``."""
    name, sep, folder = text.partition("=")
    if sep and name and "/" not in name and "\\" not in name:
        return name, Path(folder)
    return None, Path(text)


def unknown_samples(spec: str) -> tuple[str, list[Sample]]:
    """The source's name and its samples (labelled ``unknown``)."""
    from tagteller import plugins
    from tagteller.sources import walk_folder

    name, folder = parse_spec(spec)
    if not folder.is_dir():
        raise TagtellerError(f"--unknown-data {spec}: {folder} is not a folder")
    if name is not None:
        domain = plugins.get_domain(name)
        dataset = domain.layout.load(folder, domain.labels)
        train, _ = stratified_split(list(dataset.samples), domain.recipe.val_fraction, domain.recipe.seed)
        return name, [dataclasses.replace(s, label=UNKNOWN) for s in train]
    paths = [p for p in walk_folder(folder) if isinstance(p, Path)]
    if not paths:
        raise TagtellerError(f"--unknown-data {spec}: no images below {folder}")
    return folder.name, [Sample(key=str(p.relative_to(folder)), label=UNKNOWN, path=p) for p in paths]


def load_unknowns(specs: Sequence[str], size: tuple[int, int], pre: Preprocessing, seed: int,
                  log: Callable[[str], None], workers: int | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Decoded unknown images (uint8, at the model's size and colour mode) and how many came
    from each source."""
    from tagteller.sample_decoding import decode_samples

    parts, counts = [], {}
    for spec in specs:
        name, samples = unknown_samples(spec)
        rng = np.random.default_rng(seed)
        picked = [samples[i] for i in sorted(rng.permutation(len(samples))[:MAX_PER_SOURCE])]
        decoded = decode_samples(picked, {UNKNOWN: 0}, size, pre, workers)
        if decoded.failures:
            log(f"warning: --unknown-data {spec}: {len(decoded.failures)} unreadable image(s) skipped")
        parts.append(decoded.images)
        counts[name] = int(len(decoded))
    height, width = size
    images = np.concatenate(parts) if parts else np.zeros((0, height, width, pre.channels), np.uint8)
    return images, counts
