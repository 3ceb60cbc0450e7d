"""Measuring a model on labelled images: the one way tagteller runs a model over images whose
labels it knows and scores the answers.

:func:`measure` scans the images through :class:`tagteller.engine.Engine`, exactly as
``tagteller scan`` would (the model's own preprocessing), and keeps for each image its true
label, its probabilities and its top answer; :meth:`Measured.scores` turns them into the figures
of :mod:`tagteller.evaluate.metrics`. Its callers:

- ``tagteller evaluate`` (:func:`tagteller.evaluate.evaluate.evaluate_dataset`): a dataset in its
  domain's layout, every probability kept for top-k accuracy, calibration and the plots;
- training's install decision and ``scripts/`` (:func:`measure_model`): a model file on the
  validation samples, as a :class:`Measurement`;
- ``tagteller demo`` (:func:`tagteller.demo.score_model`): the Fashion-MNIST test split, where an
  image that fails to scan counts as a wrong answer.

The labels scored are the model's, in its output order, then any true label the model does not
know (an image of one always counts as a mistake: the model cannot name it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagteller.datasets import Sample
from tagteller.engine import Engine, LoadedModel, ScanResult
from tagteller.evaluate import metrics


@dataclass
class Measured:
    """A model's answers on labelled images, one entry per image in input order.

    ``probs`` has one column per label (0 for labels the model lacks, and for the labels beyond
    the ``top_k`` the scan asked for); ``predicted`` is the top answer's label index, or
    :data:`~tagteller.evaluate.metrics.NO_ANSWER` where the image failed to scan.
    """

    labels: tuple[str, ...]
    true: np.ndarray
    predicted: np.ndarray
    probs: np.ndarray
    results: list[ScanResult]
    wall_time_s: float

    @property
    def answered(self) -> np.ndarray:
        """Which images were scanned (decoded and answered)."""
        return self.predicted != metrics.NO_ANSWER

    def scores(self, failures_count_as_wrong: bool = False) -> metrics.Scores:
        """The figures of the answered images, or of every image with a failure counted as a
        wrong answer (the demo's way: each image of the test split must be named)."""
        if failures_count_as_wrong:
            return metrics.score(self.true, self.predicted, len(self.labels))
        keep = self.answered
        return metrics.score(self.true[keep], self.predicted[keep], len(self.labels))


def measure(engine: Engine, model: LoadedModel, sources: Sequence[Any], truth: Sequence[str], *,
            names: Iterable[str] | None = None, label_order: Sequence[str] = (), top_k: int = 1,
            batch_size: int = 32, on_result: Callable[[ScanResult], None] | None = None) -> Measured:
    """Scan ``sources`` (paths or arrays, as :meth:`Engine.scan` takes them) with ``model``;
    ``truth[i]`` is the label of ``sources[i]``.

    True labels the model lacks follow its own in the order of ``label_order`` (then sorted).
    ``on_result`` is called after each image. The clock covers reading, preprocessing and
    inference.
    """
    model_labels = tuple(model.info.labels)
    order = list(dict.fromkeys([*label_order, *sorted(set(truth))]))
    labels = model_labels + tuple(label for label in order if label not in model_labels)
    index = {label: i for i, label in enumerate(labels)}
    true = np.array([index[label] for label in truth], dtype=np.int64)
    predicted = np.full(len(sources), metrics.NO_ANSWER, dtype=np.int64)
    probs = np.zeros((len(sources), len(labels)), dtype=np.float64)
    results: list[ScanResult] = []
    started = time.perf_counter()
    for result in engine.scan(model, sources, top_k=top_k, batch_size=batch_size, names=names):
        if result.ok and result.top is not None:
            for p in result.predictions:
                probs[result.index, index[p.label]] = p.probability
            predicted[result.index] = index[result.top.label]
        results.append(result)
        if on_result is not None:
            on_result(result)
    results.sort(key=lambda r: r.index)
    return Measured(labels, true, predicted, probs, results, time.perf_counter() - started)


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
    measured = measure(engine, loaded, [s.source for s in samples], [s.label for s in samples],
                       names=[s.key for s in samples], batch_size=batch_size)
    scores = measured.scores()
    classes = scores.classes
    labels = measured.labels
    return Measurement(
        path=Path(loaded.path),
        labels=tuple(loaded.info.labels),
        accuracy=scores.accuracy,
        macro_f1=scores.macro_f1,
        per_class_recall={label: float(classes.recall[i]) for i, label in enumerate(labels) if classes.support[i]},
        per_class_precision={label: float(classes.precision[i]) for i, label in enumerate(labels)
                             if classes.support[i] or classes.predicted[i]},
        count=scores.count,
        confusion=scores.confusion.tolist(),
        failures=[(samples[r.index].key, r.error or "no prediction") for r in measured.results
                  if not (r.ok and r.top is not None)],
    )
