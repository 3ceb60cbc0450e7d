"""The files the two reporting commands write, atomically.

``tagteller evaluate`` (:func:`write_evaluation_report`): ``report.json`` (the numbers),
``predictions.jsonl`` (one scan record per image, with its true label), ``confusion.png``,
``errors.png`` and ``reliability.png``.

``tagteller report RUN_DIR`` and the end of training (:func:`write_training_report`):
``curves.png`` and ``summary.json`` from a run's ``history.json``, read by
:func:`tagteller.runs.load_history` (see the run-history contract in ``docs/evaluate.md``).

matplotlib is imported only when a figure is drawn (:func:`require_plots`), never by scan.
"""

from __future__ import annotations

import importlib
import json
import math
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tagteller.atomic import atomic_write_bytes, atomic_write_text
from tagteller.errors import TagtellerError
from tagteller.evaluate import metrics
from tagteller.evaluate.evaluate import Evaluation, keys_sha256
from tagteller.runs import load_history

REPORT_FORMAT = 1
INSTALL_HINT = "pip install 'tagteller[report]'"
EVALUATION_FILES = {
    "report": "report.json",
    "predictions": "predictions.jsonl",
    "confusion": "confusion.png",
    "errors": "errors.png",
    "reliability": "reliability.png",
}
TRAINING_FILES = {"curves": "curves.png", "summary": "summary.json"}


def require_plots() -> ModuleType:
    """The plotting module; a one-line :class:`TagtellerError` when matplotlib is missing."""
    try:
        return importlib.import_module("tagteller.evaluate.plots")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "matplotlib":
            raise TagtellerError(f"plots need matplotlib, which is not installed: {INSTALL_HINT}") from None
        raise


def default_top_k(n_labels: int) -> int:
    """3, or fewer for models with few labels, so that top-k says more than top-1 and not 100%."""
    return max(1, min(3, n_labels - 1))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n"


def worst_mistakes(evaluation: Evaluation, limit: int = 16) -> list[dict[str, Any]]:
    """Misclassified images, the most confident mistakes first (ties by key)."""
    predicted = evaluation.predicted
    rows: list[dict[str, Any]] = []
    for i in np.flatnonzero(predicted != evaluation.true):
        true, pred = int(evaluation.true[i]), int(predicted[i])
        rows.append({
            "key": evaluation.evaluated[i].key,
            "true": evaluation.labels[true],
            "predicted": evaluation.labels[pred],
            "confidence": float(evaluation.probs[i, pred]),
            "true_probability": float(evaluation.probs[i, true]),
            "_index": int(i),
        })
    rows.sort(key=lambda r: (-r["confidence"], r["key"]))
    return rows[:limit]


def evaluation_report(evaluation: Evaluation, top_k: int | None = None, n_bins: int = 10,
                      worst: int = 16) -> dict[str, Any]:
    """Every number of an evaluation as plain data (what ``report.json`` holds)."""
    labels = evaluation.labels
    n_model = len(evaluation.model.info.labels)
    k = min(top_k or default_top_k(n_model), len(labels))
    n = len(evaluation.evaluated)
    if n == 0:
        first = evaluation.failures[0] if evaluation.failures else None
        detail = f" (first: {first[0].key}: {first[1]})" if first else ""
        raise TagtellerError(
            f"{evaluation.dataset.root}: none of the {evaluation.selected_count} selected images could be "
            f"decoded{detail}"
        )
    true, predicted, probs = evaluation.true, evaluation.predicted, evaluation.probs
    measured = evaluation.scores()
    cm, scores = measured.confusion, measured.classes
    correct = predicted == true
    bins = metrics.calibration_bins(evaluation.confidence, correct, n_bins)
    info = evaluation.model.info
    failure_reasons = Counter(reason for _, reason in evaluation.failures)
    keys = [s.key for s in evaluation.evaluated] + [s.key for s, _ in evaluation.failures]
    trained_val_keys = info.training.get("val_keys_sha256")
    trained_on = info.training.get("data_fingerprint")
    return {
        "format": REPORT_FORMAT,
        "kind": "evaluation",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "domain": evaluation.domain.name,
        "model": {
            "path": str(evaluation.model.path),
            "version": info.model_version,
            "created": info.created,
            "labels": list(info.labels),
            "metrics_in_model": info.metrics,
            "training_data_fingerprint": trained_on,
        },
        "dataset": {
            "root": str(evaluation.dataset.root),
            "layout": evaluation.domain.layout.describe(),
            "fingerprint": evaluation.data_fingerprint,
            "split": evaluation.split,
            "val_fraction": evaluation.domain.recipe.val_fraction if evaluation.split == "val" else None,
            "seed": evaluation.domain.recipe.seed if evaluation.split == "val" else None,
            "samples_in_dataset": len(evaluation.dataset.samples),
            "samples_selected": evaluation.selected_count,
            "selected_keys_sha256": keys_sha256(keys),
            "matches_training_val_keys": (keys_sha256(keys) == trained_val_keys)
            if evaluation.split == "val" and trained_val_keys else None,
            "matches_training_data": (evaluation.data_fingerprint == trained_on) if trained_on else None,
            "labels_not_in_model": list(evaluation.labels_not_in_model),
            "skipped_by_layout": [{"key": key, "reason": reason} for key, reason in evaluation.dataset.skipped],
        },
        "counts": {
            "evaluated": n,
            "failed": len(evaluation.failures),
            "correct": int(correct.sum()),
            "skipped_by_layout": len(evaluation.dataset.skipped),
        },
        "accuracy": measured.accuracy,
        "top_k": k,
        "top_k_accuracy": metrics.top_k_accuracy(probs, true, k),
        "per_class": {
            label: {
                "precision": float(scores.precision[i]),
                "recall": float(scores.recall[i]),
                "f1": float(scores.f1[i]),
                "support": int(scores.support[i]),
                "predicted": int(scores.predicted[i]),
            }
            for i, label in enumerate(labels)
        },
        "macro_avg": measured.macro,
        "weighted_avg": measured.weighted,
        "ece": metrics.expected_calibration_error(bins),
        "calibration": {"n_bins": n_bins, "bins": [b.as_dict() for b in bins]},
        "confusion_matrix": {"labels": list(labels), "rows": "true", "columns": "predicted",
                             "counts": cm.tolist()},
        "most_confused": metrics.most_confused(cm, labels, limit=10),
        "worst_mistakes": [{k_: v for k_, v in r.items() if not k_.startswith("_")}
                           for r in worst_mistakes(evaluation, worst)],
        "failures": [{"key": s.key, "reason": reason} for s, reason in evaluation.failures],
        "failure_reasons": dict(failure_reasons.most_common()),
        "wall_time_s": round(evaluation.wall_time_s, 3),
        "images_per_s": round(evaluation.selected_count / evaluation.wall_time_s, 1)
        if evaluation.wall_time_s > 0 else None,
        "files": dict(EVALUATION_FILES),
    }


def _thumbnail(source: Any, side: int = 192) -> np.ndarray | None:
    """The photo as the person took it (EXIF-rotated), shrunk for the gallery; None if unreadable."""
    from PIL import ImageOps

    from tagteller.errors import ImageError
    from tagteller.imaging import open_image

    try:
        im = open_image(source)
    except ImageError:
        return None
    try:
        im.draft("RGB", (2 * side, 2 * side))
        im = ImageOps.exif_transpose(im) or im
        im = im.convert("L" if im.mode in ("L", "I;16", "I", "F", "1") else "RGB")
        im.thumbnail((side, side))
        return np.asarray(im)
    except (OSError, ValueError, SyntaxError):
        return None
    finally:
        im.close()


#: The files written without plots (``--no-plots``, or matplotlib absent).
METRICS_FILES = ("report", "predictions")


def write_evaluation_report(evaluation: Evaluation, out_dir: str | Path, top_k: int | None = None,
                            worst: int = 16, with_plots: bool = True) -> dict[str, Any]:
    """Write ``report.json``, ``predictions.jsonl`` and (``with_plots``) the three PNGs into ``out_dir``."""
    out = Path(out_dir)
    report = evaluation_report(evaluation, top_k=top_k, worst=worst)
    if not with_plots:
        report["files"] = {key: EVALUATION_FILES[key] for key in METRICS_FILES}
        atomic_write_text(out / EVALUATION_FILES["predictions"],
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in evaluation.records))
        atomic_write_text(out / EVALUATION_FILES["report"], _dumps(report))
        return report
    plots = require_plots()
    name = f"{evaluation.domain.name} model {report['model']['version']}, split {evaluation.split}"
    cm = np.array(report["confusion_matrix"]["counts"])
    atomic_write_bytes(out / EVALUATION_FILES["confusion"],
                       plots.plot_confusion(cm, evaluation.labels, title=f"{name}: accuracy {report['accuracy']:.1%}"))
    tiles = [
        plots.ErrorTile(
            image=_thumbnail(evaluation.evaluated[m["_index"]].source),
            key=m["key"], true=m["true"], predicted=m["predicted"],
            confidence=m["confidence"], true_probability=m["true_probability"],
        )
        for m in worst_mistakes(evaluation, worst)
    ]
    wrong = report["counts"]["evaluated"] - report["counts"]["correct"]
    atomic_write_bytes(out / EVALUATION_FILES["errors"],
                       plots.plot_errors(tiles, title=f"{name}: {len(tiles)} most confident of {wrong} mistakes"))
    bins = [metrics.CalibrationBin(**b) for b in report["calibration"]["bins"]]
    atomic_write_bytes(out / EVALUATION_FILES["reliability"], plots.plot_reliability(bins, report["ece"], title=name))
    atomic_write_text(out / EVALUATION_FILES["predictions"],
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in evaluation.records))
    atomic_write_text(out / EVALUATION_FILES["report"], _dumps(report))
    return report


# -- training runs ----------------------------------------------------------------------------

def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def training_summary(history: dict[str, Any]) -> dict[str, Any]:
    """Per phase and overall: epochs, best validation accuracy, decisions, final figures."""
    epochs = history["epochs"]
    phases = sorted(history.get("phases") or [], key=lambda p: p.get("first_epoch", 0))
    scored = [e for e in epochs if _number(e.get("val_accuracy"))]
    best = max(scored, key=lambda e: (e["val_accuracy"], -e["epoch"])) if scored else None
    phase_rows = []
    for p in phases:
        index = p.get("index")
        members = [e for e in epochs if e.get("phase") == index]
        members_scored = [e for e in members if _number(e.get("val_accuracy"))]
        phase_best = max(members_scored, key=lambda e: (e["val_accuracy"], -e["epoch"])) if members_scored else None
        phase_rows.append({
            "index": index,
            "name": p.get("name"),
            "unfreeze": p.get("unfreeze"),
            "learning_rate": p.get("learning_rate"),
            "epochs": len(members),
            "first_epoch": members[0]["epoch"] if members else p.get("first_epoch"),
            "last_epoch": members[-1]["epoch"] if members else None,
            "best_val_accuracy": phase_best["val_accuracy"] if phase_best else None,
            "best_epoch": phase_best["epoch"] if phase_best else None,
        })
    last = epochs[-1]
    return {
        "kind": "training",
        "domain": history.get("domain"),
        "run_id": history.get("run_id"),
        "status": history.get("status"),
        "epochs": len(epochs),
        "wall_time_s": history.get("wall_time_s"),
        "best": {"epoch": best["epoch"], "val_accuracy": best["val_accuracy"],
                 "val_loss": best.get("val_loss")} if best else None,
        "best_recorded": history.get("best"),
        "final": {k: last.get(k) for k in ("epoch", "phase_name", "loss", "accuracy", "val_loss", "val_accuracy", "lr")},
        "phases": phase_rows,
        "decisions": history.get("decisions") or [],
        "stopping": history.get("stopping"),
        "data_fingerprint": history.get("data_fingerprint"),
        "files": dict(TRAINING_FILES),
    }


def write_training_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Draw ``curves.png`` and write ``summary.json`` for a run folder (into it, or ``out_dir``).

    Training calls this when it finishes; ``tagteller report RUN_DIR`` calls it any time, also on
    a run still going (it draws the epochs finished so far).
    """
    plots = require_plots()
    history = load_history(run_dir)
    folder = Path(run_dir).parent if Path(run_dir).is_file() else Path(run_dir)
    out = Path(out_dir) if out_dir is not None else folder
    summary = training_summary(history)
    atomic_write_bytes(out / TRAINING_FILES["curves"], plots.plot_training_curves(history))
    atomic_write_text(out / TRAINING_FILES["summary"], _dumps(summary))
    return summary
