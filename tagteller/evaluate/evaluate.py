"""Running a model over a labelled dataset through the same engine as ``tagteller scan``
(:func:`tagteller.evaluate.measure.measure`, the one measuring function).

The dataset is read with the domain's own layout (``domain.layout.load``), so any layout a domain
supports can be evaluated. ``split="val"`` keeps only the validation side of
:func:`tagteller.datasets.stratified_split` with the domain recipe's ``val_fraction`` and
``seed``: the images training held out, hence the figures a shipped model is quoted with.
Images that fail to decode are counted with their reason and left out of the scores; the run
carries on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagteller.datasets import Dataset, Sample, stratified_split
from tagteller.domain import Domain, Recipe
from tagteller.engine import Engine, LoadedModel, ScanResult, default_engine
from tagteller.errors import DatasetError
from tagteller.evaluate import metrics
from tagteller.evaluate.measure import measure
from tagteller.output import result_record

SPLITS = ("all", "val")


def keys_sha256(keys: Sequence[str]) -> str:
    """sha256 of the sorted sample keys, one per line: names a set of samples independently of order."""
    return hashlib.sha256("\n".join(sorted(keys)).encode("utf-8", "surrogateescape")).hexdigest()


def select_samples(dataset: Dataset, split: str, recipe: Recipe) -> list[Sample]:
    """The samples to evaluate: all of them, or the validation side of the training split."""
    if split == "all":
        return list(dataset.samples)
    if split == "val":
        _, val = stratified_split(dataset.samples, recipe.val_fraction, recipe.seed)
        if not val:
            raise DatasetError(f"{dataset.root}: the validation split is empty (too few images per label)")
        return val
    raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")


@dataclass
class Evaluation:
    """What one evaluation measured, before it is turned into numbers and pictures.

    ``labels`` is the model's output order followed by any dataset label the model does not know
    (those images count as mistakes: the model cannot name them). ``probs`` has one row per
    decoded image of ``evaluated`` and one column per label (0 for labels the model lacks).
    """

    domain: Domain
    model: LoadedModel
    dataset: Dataset
    split: str
    labels: tuple[str, ...]
    evaluated: list[Sample]
    true: np.ndarray
    probs: np.ndarray
    failures: list[tuple[Sample, str]]
    records: list[dict[str, Any]] = field(default_factory=list)  # one per image, as scan writes them
    data_fingerprint: str = ""
    wall_time_s: float = 0.0

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(axis=1) if len(self.probs) else np.zeros(0, dtype=np.int64)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1) if len(self.probs) else np.zeros(0)

    def scores(self) -> metrics.Scores:
        """Accuracy, confusion matrix, per-class scores and averages of the decoded images."""
        return metrics.score(self.true, self.predicted, len(self.labels))

    @property
    def labels_not_in_model(self) -> tuple[str, ...]:
        return self.labels[len(self.model.info.labels):]

    @property
    def selected_count(self) -> int:
        return len(self.evaluated) + len(self.failures)


def evaluate_dataset(
    domain: Domain,
    data_root: str | Path,
    model_path: str | Path,
    split: str = "all",
    batch_size: int = 32,
    engine: Engine | None = None,
    on_result: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Scan every selected sample of ``data_root`` with ``model_path`` and collect the results.

    ``on_result(done, total)`` is called after each image (for a progress bar).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    engine = engine or default_engine()
    model = engine.load(model_path)
    domain.check_model(model.info.domain, model_path)
    model_labels = model.info.labels
    dataset = domain.layout.load(Path(data_root), labels=model_labels)
    samples = select_samples(dataset, split, domain.recipe)
    done = 0

    def progress(_result: ScanResult) -> None:
        nonlocal done
        done += 1
        if on_result is not None:
            on_result(done, len(samples))

    measured = measure(engine, model, [s.source for s in samples], [s.label for s in samples],
                       names=[s.key for s in samples], label_order=dataset.labels, top_k=len(model_labels),
                       batch_size=batch_size, on_result=progress)
    answered = measured.answered
    evaluated = [s for s, ok in zip(samples, answered) if ok]
    failures = [(samples[r.index], r.error or "failed") for r in measured.results if not answered[r.index]]
    records = [result_record(r, domain.low_confidence, extra={
        "true_label": samples[r.index].label,
        "correct": bool(measured.predicted[r.index] == measured.true[r.index]) if answered[r.index] else None})
        for r in measured.results]
    return Evaluation(
        domain=domain,
        model=model,
        dataset=dataset,
        split=split,
        labels=measured.labels,
        evaluated=evaluated,
        true=measured.true[answered],
        probs=measured.probs[answered],
        failures=failures,
        records=records,
        data_fingerprint=dataset.fingerprint(),
        wall_time_s=measured.wall_time_s,
    )
