"""Running a model over a labelled dataset through the same engine as ``tagteller scan``.

The dataset is read with the domain's own layout (``domain.layout.load``), so any layout a domain
supports can be evaluated. ``split="val"`` keeps only the validation side of
:func:`tagteller.datasets.stratified_split` with the domain recipe's ``val_fraction`` and
``seed``: the images training held out, hence the figures a shipped model is quoted with.
Images that fail to decode are counted with their reason and left out of the scores; the run
carries on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagteller.datasets import Dataset, Sample, stratified_split
from tagteller.domain import Domain, Recipe
from tagteller.engine import Engine, LoadedModel, default_engine
from tagteller.errors import DatasetError
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
    labels = tuple(model_labels) + tuple(label for label in dataset.labels if label not in model_labels)
    index = {label: i for i, label in enumerate(labels)}

    started = time.perf_counter()
    rows: list[np.ndarray] = []
    evaluated: list[Sample] = []
    failures: list[tuple[Sample, str]] = []
    records: list[dict[str, Any]] = []
    results = engine.scan(model, [s.source for s in samples], top_k=len(model_labels),
                          batch_size=batch_size, names=[s.key for s in samples])
    for result in results:
        sample = samples[result.index]
        if result.ok:
            row = np.zeros(len(labels), dtype=np.float64)
            for p in result.predictions:
                row[index[p.label]] = p.probability
            rows.append(row)
            evaluated.append(sample)
            correct = result.top is not None and result.top.label == sample.label
        else:
            failures.append((sample, result.error or "failed"))
            correct = None
        records.append(result_record(result, domain.low_confidence,
                                     extra={"true_label": sample.label, "correct": correct}))
        if on_result is not None:
            on_result(len(records), len(samples))
    wall = time.perf_counter() - started
    probs = np.stack(rows) if rows else np.zeros((0, len(labels)))
    true = np.array([index[s.label] for s in evaluated], dtype=np.int64)
    return Evaluation(
        domain=domain,
        model=model,
        dataset=dataset,
        split=split,
        labels=labels,
        evaluated=evaluated,
        true=true,
        probs=probs,
        failures=failures,
        records=records,
        data_fingerprint=dataset.fingerprint(),
        wall_time_s=wall,
    )
