"""``tagteller data check``: what a dataset folder holds before anyone trains on it.

Reads the folder with the domain's own layout and reports, without tensorflow: images per label
and per split side, the imbalance (largest / smallest label), labels the domain does not
declare or that have no images, exact duplicates (same sha256 of the file's bytes, or of the
pixels for idx arrays; also across labels, which is worse), files the layout skipped, and images
that do not decode with :func:`tagteller.imaging.prepare` at the recipe's input size (what
training would skip).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagteller.datasets import Sample, stratified_split
from tagteller.domain import Domain
from tagteller.errors import ImageError
from tagteller.imaging import prepare


@dataclass
class DataReport:
    root: Path
    layout: str
    labels: tuple[str, ...]
    counts: dict[str, int]
    train_counts: dict[str, int]
    val_counts: dict[str, int]
    undeclared: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)  # groups of keys with identical content
    conflicting: list[list[str]] = field(default_factory=list)  # duplicate groups under different labels
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def imbalance(self) -> float | None:
        present = [n for n in self.counts.values() if n]
        return max(present) / min(present) if present else None

    @property
    def ok(self) -> bool:
        """No unreadable images (duplicates and imbalance are warnings, not failures)."""
        return not self.unreadable

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root), "layout": self.layout, "labels": list(self.labels), "total": self.total,
            "counts": self.counts, "train_counts": self.train_counts, "val_counts": self.val_counts,
            "imbalance": self.imbalance, "undeclared_labels": self.undeclared, "labels_without_images": self.empty,
            "duplicates": self.duplicates, "duplicates_under_different_labels": self.conflicting,
            "skipped": [{"file": k, "reason": r} for k, r in self.skipped],
            "unreadable": [{"file": k, "reason": r} for k, r in self.unreadable],
        }


def _digest(sample: Sample) -> str:
    h = hashlib.sha256()
    if sample.array is not None:
        h.update(np.ascontiguousarray(sample.array).tobytes())
    else:
        assert sample.path is not None
        with open(sample.path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def check_dataset(domain: Domain, root: Path, decode: bool = True, workers: int | None = None) -> DataReport:
    """Read ``root`` with ``domain``'s layout and report on it (see the module docstring)."""
    dataset = domain.layout.load(Path(root), domain.labels)
    recipe = domain.recipe
    counts = dataset.counts()
    train, val = stratified_split(dataset.samples, recipe.val_fraction, recipe.seed)
    train_counts = Counter(s.label for s in train)
    val_counts = Counter(s.label for s in val)

    def inspect(sample: Sample) -> tuple[str | None, str | None]:
        try:
            digest = _digest(sample)
        except OSError as exc:
            return None, f"cannot read: {exc.strerror or exc}"
        if decode and sample.array is None:
            try:
                prepare(sample.source, recipe.input_size, recipe.preprocessing)
            except ImageError as exc:
                return digest, str(exc)
        return digest, None

    by_digest: dict[str, list[str]] = defaultdict(list)
    unreadable: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=workers or max(1, os.cpu_count() or 1)) as pool:
        for sample, (digest, problem) in zip(dataset.samples, pool.map(inspect, dataset.samples, chunksize=32)):
            if digest is not None:
                by_digest[digest].append(sample.key)
            if problem is not None:
                unreadable.append((sample.key, problem))
    label_of = {s.key: s.label for s in dataset.samples}
    duplicates = sorted(sorted(keys) for keys in by_digest.values() if len(keys) > 1)
    return DataReport(
        root=dataset.root,
        layout=domain.layout.describe(),
        labels=dataset.labels,
        counts=counts,
        train_counts={label: train_counts.get(label, 0) for label in dataset.labels},
        val_counts={label: val_counts.get(label, 0) for label in dataset.labels},
        undeclared=[label for label in dataset.labels if label not in domain.labels],
        empty=[label for label in dataset.labels if counts.get(label, 0) == 0],
        duplicates=duplicates,
        conflicting=[g for g in duplicates if len({label_of[k] for k in g}) > 1],
        skipped=list(dataset.skipped),
        unreadable=unreadable,
    )


def report_lines(report: DataReport, limit: int = 20) -> list[str]:
    """The report as text lines (the CLI prints them; warnings start with ``warning:``)."""
    lines = [f"{report.root}: {report.total} images, {len(report.labels)} labels ({report.layout})"]
    width = max(len(label) for label in report.labels)
    for label in report.labels:
        lines.append(f"  {label:<{width}}  {report.counts.get(label, 0):>7}   "
                     f"train {report.train_counts.get(label, 0):>6}  val {report.val_counts.get(label, 0):>6}")
    if report.imbalance is not None:
        note = "  (imbalanced: training uses class weights when the recipe says 'auto')" if report.imbalance > 1.5 else ""
        lines.append(f"imbalance (largest / smallest label): {report.imbalance:.2f}{note}")
    for label in report.undeclared:
        lines.append(f"warning: label {label!r} is not one of the domain's")
    for label in report.empty:
        lines.append(f"warning: label {label!r} has no images")
    if report.duplicates:
        extra = sum(len(g) - 1 for g in report.duplicates)
        lines.append(f"warning: {len(report.duplicates)} group(s) of exact duplicates ({extra} redundant file(s))")
        for group in report.duplicates[:limit]:
            mark = "  <- under different labels" if group in report.conflicting else ""
            lines.append(f"  {' = '.join(group)}{mark}")
    for key, reason in report.skipped[:limit]:
        lines.append(f"skipped: {key}: {reason}")
    if len(report.skipped) > limit:
        lines.append(f"skipped: ... and {len(report.skipped) - limit} more")
    for key, reason in report.unreadable[:limit]:
        lines.append(f"error: {report.root / key}: {reason}")
    if len(report.unreadable) > limit:
        lines.append(f"error: ... and {len(report.unreadable) - limit} more unreadable")
    lines.append(f"{len(report.unreadable)} unreadable, {len(report.skipped)} skipped, "
                 f"{sum(len(g) - 1 for g in report.duplicates)} duplicate file(s)")
    return lines
