"""Installing a newly trained model only when it is better than the one in use.

Both models are measured on the same validation split by the same code path
(:func:`tagteller.evaluate.measure.measure_model`, through the engine as ``tagteller scan``
would, each model with its own preprocessing). :func:`decide_install` compares a new model
with the one in use (installed, or shipped when none is installed): the new one wins on higher
validation accuracy, or equal accuracy and higher macro-F1; ``--force`` installs anyway; a
changed label set cannot be compared and installs the new model. :func:`install_model` replaces
the file atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagteller.atomic import atomic_copy
from tagteller.datasets import Sample
from tagteller.engine import Engine
from tagteller.errors import ModelError
from tagteller.evaluate.measure import Measurement, measure_model


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
