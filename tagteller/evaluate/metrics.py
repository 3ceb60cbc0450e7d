"""Classification metrics from true label indices and predicted probabilities (numpy only).

Conventions, the same as scikit-learn's where it has one:

- the prediction is the most probable class, ties going to the lower index (as
  :func:`tagteller.engine.top_predictions` and ``numpy.argmax`` do);
- a precision, recall or F1 whose denominator is zero is 0;
- macro averages are over the classes that occur in the truth or in the predictions (scikit-learn's
  ``f1_score(average="macro")``, the one macro-F1 of tagteller); weighted averages weight each
  class by its support (number of true samples);
- a prediction of :data:`NO_ANSWER` (an image that failed to scan, where it must count) is wrong:
  it is in its true class's support and no class's predictions;
- top-k: the true class is among the ``k`` most probable, ties ordered as for the prediction;
- expected calibration error (Guo et al., 2017): the top-1 confidences fall into ``n_bins``
  equal-width bins ``(lower, upper]`` (the first also takes 0), and
  ``ECE = sum over bins of (bin count / n) * |bin accuracy - bin mean confidence|``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The predicted index of a sample that got no answer (it failed to scan).
NO_ANSWER = -1


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` counts: row = true class, column = predicted class."""
    true = np.asarray(true, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    if true.shape != predicted.shape:
        raise ValueError(f"true and predicted differ in shape: {true.shape} vs {predicted.shape}")
    if true.size and (min(true.min(), predicted.min()) < 0 or max(true.max(), predicted.max()) >= n_classes):
        raise ValueError(f"class index outside 0..{n_classes - 1}")
    flat = np.bincount(true * n_classes + predicted, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass(frozen=True)
class ClassScores:
    """Per-class arrays, in label order."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray  # true samples of the class
    predicted: np.ndarray  # samples predicted as the class

    @property
    def present(self) -> np.ndarray:
        """Classes that occur in the truth or the predictions (the ones macro averages count)."""
        return (self.support > 0) | (self.predicted > 0)


def class_scores(cm: np.ndarray, support: np.ndarray | None = None) -> ClassScores:
    """Precision, recall, F1, support and prediction counts per class from a confusion matrix
    (``support``: true samples per class, when some of them are not in ``cm``: no answer)."""
    cm = np.asarray(cm, dtype=np.int64)
    hits = np.diag(cm)
    support = cm.sum(axis=1) if support is None else np.asarray(support, dtype=np.int64)
    predicted = cm.sum(axis=0)
    precision = _ratio(hits, predicted)
    recall = _ratio(hits, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return ClassScores(precision, recall, f1, support, predicted)


def averages(scores: ClassScores) -> dict[str, dict[str, float]]:
    """``{"macro": {...}, "weighted": {...}}`` of precision, recall and F1."""
    present = scores.present
    total = int(scores.support.sum())
    out: dict[str, dict[str, float]] = {"macro": {}, "weighted": {}}
    for name in ("precision", "recall", "f1"):
        values = getattr(scores, name)
        out["macro"][name] = float(values[present].mean()) if present.any() else 0.0
        out["weighted"][name] = float((values * scores.support).sum() / total) if total else 0.0
    out["macro"]["support"] = total
    out["weighted"]["support"] = total
    return out


@dataclass(frozen=True)
class Scores:
    """The figures of one set of answers: accuracy, the confusion matrix of the answered samples,
    per-class scores, and the macro and weighted averages."""

    accuracy: float
    confusion: np.ndarray
    classes: ClassScores
    macro: dict[str, float]
    weighted: dict[str, float]
    count: int  # samples scored

    @property
    def macro_f1(self) -> float:
        return self.macro["f1"]

    @property
    def correct(self) -> int:
        return int(np.diag(self.confusion).sum())


def score(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> Scores:
    """Score ``predicted`` against ``true`` (class indices; :data:`NO_ANSWER` counts as wrong)."""
    true = np.asarray(true, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    if true.shape != predicted.shape:
        raise ValueError(f"true and predicted differ in shape: {true.shape} vs {predicted.shape}")
    answered = predicted != NO_ANSWER
    cm = confusion_matrix(true[answered], predicted[answered], n_classes)
    support = np.bincount(true, minlength=n_classes) if true.size else np.zeros(n_classes, dtype=np.int64)
    classes = class_scores(cm, support)
    avg = averages(classes)
    accuracy = float((true == predicted).mean()) if true.size else 0.0
    return Scores(accuracy, cm, classes, avg["macro"], avg["weighted"], int(true.size))


def true_class_rank(probs: np.ndarray, true: np.ndarray) -> np.ndarray:
    """0-based rank of the true class among each row's probabilities (0 = the prediction)."""
    probs = np.asarray(probs, dtype=np.float64)
    true = np.asarray(true, dtype=np.int64)
    p_true = probs[np.arange(len(true)), true][:, None]
    columns = np.arange(probs.shape[1])[None, :]
    greater = (probs > p_true).sum(axis=1)
    tied_before = ((probs == p_true) & (columns < true[:, None])).sum(axis=1)
    return greater + tied_before


def top_k_accuracy(probs: np.ndarray, true: np.ndarray, k: int) -> float:
    """Fraction of samples whose true class is among the ``k`` most probable."""
    if k < 1:
        raise ValueError("k must be at least 1")
    if len(true) == 0:
        return 0.0
    return float((true_class_rank(probs, true) < k).mean())


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    count: int
    accuracy: float | None  # None for an empty bin
    confidence: float | None  # mean top-1 confidence in the bin

    def as_dict(self) -> dict[str, Any]:
        return {"lower": self.lower, "upper": self.upper, "count": self.count,
                "accuracy": self.accuracy, "confidence": self.confidence}


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> list[CalibrationBin]:
    """Equal-width bins ``(lower, upper]`` over [0, 1] of top-1 confidence (0 goes in the first)."""
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.arange(n_bins + 1) / n_bins  # i / n: the exact nearest double to each edge
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        member = index == b
        count = int(member.sum())
        bins.append(CalibrationBin(
            lower=float(edges[b]),
            upper=float(edges[b + 1]),
            count=count,
            accuracy=float(correct[member].mean()) if count else None,
            confidence=float(confidence[member].mean()) if count else None,
        ))
    return bins


def expected_calibration_error(bins: Sequence[CalibrationBin]) -> float:
    """Count-weighted mean gap between accuracy and confidence over the bins."""
    total = sum(b.count for b in bins)
    if not total:
        return 0.0
    return float(sum(b.count / total * abs(b.accuracy - b.confidence) for b in bins
                     if b.accuracy is not None and b.confidence is not None))


def top1_calibration_error(probs: np.ndarray, true: np.ndarray, n_bins: int = 10) -> float:
    """:func:`expected_calibration_error` of the top-1 answers of ``probs`` against ``true``."""
    probs = np.asarray(probs, dtype=np.float64)
    true = np.asarray(true, dtype=np.int64)
    if len(true) == 0:
        return 0.0
    return expected_calibration_error(calibration_bins(probs.max(axis=1), probs.argmax(axis=1) == true, n_bins))


def most_confused(cm: np.ndarray, labels: Sequence[str], limit: int = 10) -> list[dict[str, Any]]:
    """The largest off-diagonal cells: ``{"true", "predicted", "count", "fraction_of_true"}``.

    Ordered by count (descending), then by true and predicted label order; zero cells are left out.
    """
    cm = np.asarray(cm, dtype=np.int64)
    support = cm.sum(axis=1)
    cells = [
        (int(cm[t, p]), t, p)
        for t in range(cm.shape[0]) for p in range(cm.shape[1])
        if t != p and cm[t, p] > 0
    ]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [
        {"true": labels[t], "predicted": labels[p], "count": n, "fraction_of_true": n / int(support[t])}
        for n, t, p in cells[:limit]
    ]
