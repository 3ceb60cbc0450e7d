"""A domain's run history: one folder per training run, its ``latest`` pointer and its
``history.json``, written by training and read by ``tagteller report`` and ``tagteller export``;
and the best earlier model to resume from. The one place that knows this layout (no tensorflow).

``tagteller.paths.runs_dir(domain) / <run_id>/`` (``run_id`` = UTC ``YYYYmmdd-HHMMSS``, with a
``-2``, ``-3``... suffix when taken) holds ``history.json`` (rewritten atomically after every
epoch), ``best.keras`` (the best epoch so far), ``tensorboard/``, and after export ``model.onnx``
and ``metrics.json``. ``runs_dir(domain)/latest`` names the last run. ``tagteller report`` reads
``history.json``; its keys are the run-history contract:

``domain, run_id, recipe, stopping, labels, data_fingerprint, val_keys_sha256, phases, epochs,
decisions, best, status, wall_time_s`` (plus ``resumed_from``, ``counts``, ``command_line``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tagteller.atomic import atomic_write_text
from tagteller.domain import Recipe
from tagteller.errors import TagtellerError
from tagteller.paths import runs_dir

HISTORY = "history.json"
CHECKPOINT = "best.keras"
MODEL = "model.onnx"
METRICS = "metrics.json"
TENSORBOARD = "tensorboard"
LATEST = "latest"


def recipe_json(recipe: Recipe) -> dict[str, Any]:
    """The recipe as plain JSON data (tuples become lists)."""
    return json.loads(json.dumps(asdict(recipe)))


def new_run_dir(domain: str, now: datetime | None = None) -> tuple[str, Path]:
    """Create and return ``(run_id, folder)`` for a new run of ``domain``."""
    base = runs_dir(domain)
    base.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        run_id = stamp if n == 1 else f"{stamp}-{n}"
        try:
            (base / run_id).mkdir()
        except FileExistsError:
            continue
        atomic_write_text(base / LATEST, run_id + "\n")
        return run_id, base / run_id
    raise RuntimeError(f"{base}: could not find a free run folder name for {stamp}")


def latest_run(domain: str) -> Path:
    """The folder of ``domain``'s last run, as its ``latest`` pointer names it."""
    folder = runs_dir(domain)
    pointer = folder / LATEST
    try:
        run_id = pointer.read_text(encoding="utf-8").strip()
    except OSError:
        raise TagtellerError(f"{pointer}: no training run recorded for domain {domain!r}") from None
    if not run_id or Path(run_id).name != run_id or run_id in (".", ".."):
        raise TagtellerError(f"{pointer}: does not hold a run id ({run_id[:40]!r})")
    return folder / run_id


def read_history(path: Path) -> dict[str, Any]:
    """The JSON object in a ``history.json``; one-line :class:`TagtellerError` when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TagtellerError(f"{path}: no training history here (is {path.parent} a run folder?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TagtellerError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    try:
        history = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise TagtellerError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(history, dict):
        raise TagtellerError(f"{path}: not a training history (not a JSON object)")
    return history


def load_history(run_dir: str | Path) -> dict[str, Any]:
    """Read and check ``RUN_DIR/history.json`` (or that file itself) for drawing: at least one
    finished epoch, each with an integer ``epoch``; ``phases`` and ``decisions`` lists of objects."""
    path = Path(run_dir) / HISTORY
    if Path(run_dir).is_file() and Path(run_dir).name.endswith(".json"):
        path = Path(run_dir)
    history = read_history(path)
    if not isinstance(history.get("epochs"), list):
        raise TagtellerError(f"{path}: not a training history (no 'epochs' list)")
    epochs = history["epochs"]
    if not epochs:
        raise TagtellerError(f"{path}: no epoch has finished yet")
    for i, e in enumerate(epochs):
        if not isinstance(e, dict) or not isinstance(e.get("epoch"), int) or isinstance(e.get("epoch"), bool):
            raise TagtellerError(f"{path}: epochs[{i}] has no integer 'epoch'")
    for key in ("phases", "decisions"):
        value = history.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise TagtellerError(f"{path}: '{key}' must be a list of objects")
    return history


class RunHistory:
    """The ``history.json`` of one run, saved atomically whenever it changes."""

    def __init__(self, folder: Path, header: dict[str, Any]) -> None:
        self.folder = folder
        self.started = time.monotonic()
        self.data: dict[str, Any] = {
            **header,
            "phases": [],
            "epochs": [],
            "decisions": [],
            "best": None,
            "status": "running",
            "wall_time_s": 0.0,
        }
        self.save()

    @property
    def path(self) -> Path:
        return self.folder / HISTORY

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def save(self) -> None:
        self.data["wall_time_s"] = round(self.elapsed(), 3)
        atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=False) + "\n")

    def start_phase(self, index: int, name: str, unfreeze: int | str, learning_rate: float, first_epoch: int) -> None:
        self.data["phases"].append({"index": index, "name": name, "unfreeze": unfreeze,
                                    "learning_rate": learning_rate, "first_epoch": first_epoch})
        self.save()

    def add_epoch(self, record: dict[str, Any], is_best: bool) -> None:
        self.data["epochs"].append(record)
        if is_best:
            self.data["best"] = {"epoch": record["epoch"], "val_accuracy": record["val_accuracy"]}
        self.save()

    def add_decision(self, epoch: int, action: str, reason: str, by: str) -> None:
        self.data["decisions"].append({"epoch": epoch, "action": action, "reason": reason, "by": by})
        self.save()

    def finish(self, status: str, **extra: Any) -> None:
        self.data["status"] = status
        self.data.update(extra)
        self.save()

    def abandon(self, error: str) -> None:
        """A run that ended in an error before training finished: ``interrupted``, with why."""
        if self.data["status"] == "running":
            self.finish("interrupted", error=error)

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return self.data["epochs"]

    @property
    def best(self) -> dict[str, Any] | None:
        return self.data["best"]


@dataclass(frozen=True)
class EarlierRun:
    """A finished or interrupted run that left a checkpoint."""

    run_id: str
    folder: Path
    history: dict[str, Any]

    @property
    def checkpoint(self) -> Path:
        return self.folder / CHECKPOINT

    @property
    def best_val_accuracy(self) -> float:
        best = self.history.get("best") or {}
        value = best.get("val_accuracy")
        return float(value) if isinstance(value, (int, float)) else -1.0

    @property
    def last_phase(self) -> int:
        phases = self.history.get("phases") or []
        return int(phases[-1].get("index", 0)) if phases else 0


def earlier_runs(domain: str) -> tuple[list[EarlierRun], list[str]]:
    """Runs of ``domain`` with a readable history and a checkpoint, oldest first; and one line
    per run folder that had to be passed over (and why)."""
    base = runs_dir(domain)
    runs: list[EarlierRun] = []
    problems: list[str] = []
    if not base.is_dir():
        return runs, problems
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / CHECKPOINT).is_file():
            continue
        try:
            history = json.loads((folder / HISTORY).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"{folder / HISTORY}: unreadable ({exc.__class__.__name__}); run not resumed from")
            continue
        if isinstance(history, dict):
            runs.append(EarlierRun(folder.name, folder, history))
    return runs, problems


def resume_candidates(domain: str, labels: tuple[str, ...], recipe: Recipe) -> tuple[list[EarlierRun], list[str]]:
    """Earlier runs whose model fits this training (same labels, backbone, input size and
    preprocessing), best validation accuracy first, then the most recent first."""
    runs, problems = earlier_runs(domain)
    want = recipe_json(recipe)
    fitting = []
    for run in runs:
        theirs = run.history.get("recipe") or {}
        reasons = []
        if list(run.history.get("labels") or []) != list(labels):
            reasons.append("other labels")
        for key in ("backbone", "input_size", "preprocessing", "backbone_options"):
            if theirs.get(key) != want.get(key):
                reasons.append(f"other {key}")
        if reasons:
            problems.append(f"run {run.run_id} not resumed from: {', '.join(reasons)}")
        else:
            fitting.append(run)
    fitting.sort(key=lambda r: (r.best_val_accuracy, r.run_id), reverse=True)
    return fitting, problems
