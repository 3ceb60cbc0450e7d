"""Measuring model files with the engine, and installing a new model only when it is better.

:func:`measure_model` scans labelled samples through :class:`tagteller.engine.Engine`, exactly
as ``tagteller scan`` would (each model with its own preprocessing), so two models are compared
on the same validation split by the same code path. :func:`decide_install` compares a new model
with the one in use (installed, or shipped when none is installed): the new one wins on higher
validation accuracy, or equal accuracy and higher macro-F1; ``--force`` installs anyway; a
changed label set cannot be compared and installs the new model. :func:`install_model` replaces
the file atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagteller.atomic import atomic_copy
from tagteller.datasets import Sample
from tagteller.engine import Engine, LoadedModel
from tagteller.errors import ModelError
from tagteller.evaluate.metrics import averages, class_scores, confusion_matrix


@dataclass
class Measurement:
    """A model file's figures on labelled samples (``failures``: samples that did not decode)."""

    path: Path
    labels: tuple[str, ...]
    accuracy: float
    macro_f1: float
    per_class_recall: dict[str, float]
    per_class_precision: dict[str, float]
    count: int
    confusion: list[list[int]]
    failures: list[tuple[str, str]] = field(default_factory=list)

    def as_metrics(self) -> dict[str, Any]:
        """The ``metrics`` recorded in the model's metadata and ``metrics.json``."""
        return {
            "val_accuracy": round(self.accuracy, 6),
            "macro_f1": round(self.macro_f1, 6),
            "per_class_recall": {k: round(v, 6) for k, v in self.per_class_recall.items()},
            "per_class_precision": {k: round(v, 6) for k, v in self.per_class_precision.items()},
            "val_count": self.count,
            "confusion": self.confusion,
        }


def measure_model(path: str | Path | LoadedModel, samples: Sequence[Sample], engine: Engine | None = None,
                  batch_size: int = 32) -> Measurement:
    """Scan ``samples`` with the model at ``path`` (or already loaded); a sample whose label the
    model lacks counts as a mistake, one that fails to decode is left out and listed."""
    engine = engine or Engine()
    loaded = path if isinstance(path, LoadedModel) else engine.load(path)
    path = loaded.path
    model_labels = tuple(loaded.info.labels)
    labels = model_labels + tuple(sorted({s.label for s in samples} - set(model_labels)))
    index = {label: i for i, label in enumerate(labels)}
    true, predicted, failures = [], [], []
    for result in engine.scan(loaded, [s.source for s in samples], top_k=1, batch_size=batch_size,
                              names=[s.key for s in samples]):
        sample = samples[result.index]
        if not result.ok or result.top is None:
            failures.append((sample.key, result.error or "no prediction"))
            continue
        true.append(index[sample.label])
        predicted.append(index[result.top.label])
    t, p = np.array(true, dtype=np.int64), np.array(predicted, dtype=np.int64)
    cm = confusion_matrix(t, p, len(labels))
    scores = class_scores(cm)
    accuracy = float((t == p).mean()) if len(t) else 0.0
    return Measurement(
        path=Path(path),
        labels=model_labels,
        accuracy=accuracy,
        macro_f1=averages(scores)["macro"]["f1"],
        per_class_recall={label: float(scores.recall[i]) for i, label in enumerate(labels) if scores.support[i]},
        per_class_precision={label: float(scores.precision[i]) for i, label in enumerate(labels)
                             if scores.support[i] or scores.predicted[i]},
        count=len(t),
        confusion=cm.tolist(),
        failures=failures,
    )


@dataclass(frozen=True)
class InstallDecision:
    """Whether to install, why, and the figures of the model it would replace."""

    install: bool
    reason: str
    current_path: Path | None = None
    current: Measurement | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "install": self.install,
            "reason": self.reason,
            "current_model": str(self.current_path) if self.current_path else None,
            "current_val_accuracy": self.current.accuracy if self.current else None,
            "current_macro_f1": self.current.macro_f1 if self.current else None,
        }


def decide_install(new: Measurement, current_path: Path | None, samples: Sequence[Sample],
                   force: bool = False, engine: Engine | None = None) -> InstallDecision:
    """Compare ``new`` with the model at ``current_path`` measured on the same ``samples``."""
    if current_path is None or not Path(current_path).is_file():
        return InstallDecision(True, "no model in use yet", None)
    try:
        current = measure_model(current_path, samples, engine)
    except ModelError as exc:
        return InstallDecision(True, f"the model in use cannot be read ({exc})", Path(current_path))
    if force:
        return InstallDecision(True, f"--force (in use: {current.accuracy:.4f}, new: {new.accuracy:.4f})",
                               Path(current_path), current)
    if set(current.labels) != set(new.labels):
        return InstallDecision(True, f"the labels changed ({', '.join(current.labels)} -> {', '.join(new.labels)})",
                               Path(current_path), current)
    figures = f"val accuracy {new.accuracy:.4f} vs {current.accuracy:.4f} in use"
    if new.accuracy > current.accuracy or (new.accuracy == current.accuracy and new.macro_f1 > current.macro_f1):
        return InstallDecision(True, f"better: {figures}", Path(current_path), current)
    return InstallDecision(False, f"not better: {figures} (--force installs it anyway)", Path(current_path), current)


def install_model(source: str | Path, target: str | Path) -> Path:
    """Copy ``source`` over ``target`` atomically (the old model stays whole until the rename)."""
    atomic_copy(source, target)
    return Path(target)
