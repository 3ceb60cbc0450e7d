"""The phased training loop: one epoch at a time, the stopping policy deciding after each.

Per epoch: set the learning rate (:mod:`~tagteller.train.schedule`), fit one epoch, validate,
save ``best.keras`` when the epoch is the best so far (atomically, *before* ``history.json``
names it), append the epoch to ``history.json``, log scalars for TensorBoard, print one line on
stderr, then let :class:`~tagteller.epoch_decisions.EpochDirector` decide: continue, unfreeze
the next phase (recompiled with its learning rate), or stop.

Ctrl-C once: the epoch finishes, is saved, then the person is asked (``--yes``: stop and export
as usual). Twice: training stops at once; the best checkpoint and history stay as last saved.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagteller.epoch_decisions import EpochDirector
from tagteller.runs import RunHistory
from tagteller.stopping import EpochRecord
from tagteller.train.model import backbone_block_count, compile_model, save_checkpoint, set_unfrozen
from tagteller.train.schedule import PhaseSchedule, cosine_horizon
from tagteller.training_config import TrainConfig
from tagteller.training_prompt import Prompter, UserChoice


class InterruptWatch:
    """SIGINT while training: the first asks to stop after the epoch, the second stops now.

    Python runs signal handlers between bytecodes, so two presses within one TensorFlow step
    arrive as one: the second counts once the first has been acknowledged on stderr.
    """

    def __init__(self, notify: Callable[[str], None]) -> None:
        self.requested = False
        self.notify = notify
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.notify("Ctrl-C: finishing this epoch, then saving (press Ctrl-C again to stop at once)")

    def __enter__(self) -> InterruptWatch:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """While asking a question, Ctrl-C behaves normally (raises KeyboardInterrupt)."""
        if not self._installed:
            yield
            return
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, self._handle)


class ScalarLog:
    """Epoch scalars in TensorBoard's event format (``train/`` and ``validation/``, the Keras
    callback's layout). Written with ``tf.summary.write``, which needs no tensorboard package."""

    def __init__(self, folder: Path) -> None:
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        self.tf = tf
        self.meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        self.writers = {side: tf.summary.create_file_writer(str(folder / side)) for side in ("train", "validation")}

    def write(self, epoch: int, logs: dict[str, float], learning_rate: float) -> None:
        for side, writer in self.writers.items():
            with writer.as_default():
                for key, value in logs.items():
                    is_val = key.startswith("val_")
                    if is_val == (side == "validation"):
                        name = key[4:] if is_val else key
                        self.tf.summary.write(f"epoch_{name}", self.tf.constant(float(value)), step=epoch,
                                              metadata=self.meta)
                if side == "train":
                    self.tf.summary.write("epoch_learning_rate", self.tf.constant(learning_rate), step=epoch,
                                          metadata=self.meta)
            writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


class PausingPrompter:
    """Asks with Ctrl-C behaving normally (the training handler is paused meanwhile)."""

    def __init__(self, prompter: Prompter, watch: InterruptWatch) -> None:
        self.prompter = prompter
        self.watch = watch
        self.interactive = prompter.interactive

    def ask(self, situation: str, has_next_phase: bool) -> UserChoice:
        with self.watch.paused():
            return self.prompter.ask(situation, has_next_phase)


@dataclass
class LoopOutcome:
    """``status`` is ``finished`` (stopped by policy, person or a first Ctrl-C) or
    ``interrupted`` (a second Ctrl-C: nothing more should run)."""

    status: str
    epochs: int
    reason: str
    best: dict[str, Any] | None = None
    phases_run: list[str] = field(default_factory=list)


class TrainingLoop:
    """Runs the phases of ``config.recipe`` on ``model`` (see the module docstring), within
    ``config.limits`` and as ``config.policy`` decides, from phase ``start_phase``."""

    def __init__(self, model: Any, config: TrainConfig, history: RunHistory, train_ds: Any, val_ds: Any,
                 checkpoint: Path, prompter: Prompter, log: Callable[[str], None], *, start_phase: int = 0,
                 class_weight: dict[int, float] | None = None, scalars: ScalarLog | None = None,
                 saved_model: Any = None) -> None:
        self.model = model
        #: What ``best.keras`` holds: ``model`` itself, or (cached-prefix training) the whole
        #: classifier whose top ``model`` shares.
        self.saved_model = model if saved_model is None else saved_model
        self.config = config
        self.recipe = config.recipe
        self.history = history
        self.train_ds = train_ds
        self.val_ds = val_ds
        self.checkpoint = checkpoint
        self.class_weight = class_weight
        self.log = log
        self.scalars = scalars
        self.watch = InterruptWatch(lambda text: print(text, file=sys.stderr, flush=True))
        self.director = EpochDirector(
            config.recipe.phases, config.policy, config.limits, PausingPrompter(prompter, self.watch),
            history.add_decision, lambda: backbone_block_count(model, config.recipe), start_phase,
        )
        self.best_key: tuple[float, float] | None = None
        self.schedule: PhaseSchedule | None = None
        self.loop_started = 0.0

    def enter_phase(self) -> None:
        """Unfreeze and recompile for the director's current phase."""
        director = self.director
        phase = director.phase
        trainable = set_unfrozen(self.model, self.recipe, phase.unfreeze)
        compile_model(self.model, phase.learning_rate, self.recipe.label_smoothing)
        self.schedule = PhaseSchedule(self.recipe.schedule, phase.learning_rate, self.model)
        self.history.start_phase(director.phase_index, phase.name, phase.unfreeze, phase.learning_rate,
                                 director.epoch + 1)
        self.log(f"phase {director.phase_index} '{phase.name}': unfreeze {phase.unfreeze}, "
                 f"learning rate {phase.learning_rate:g}, up to {phase.epochs} epochs "
                 f"({trainable} trainable weight tensors)")

    def run(self) -> LoopOutcome:
        self.loop_started = self.history.elapsed()
        try:
            with self.watch:
                self.enter_phase()
                while True:
                    try:
                        record = self.run_epoch()
                    except KeyboardInterrupt:
                        reason = "second Ctrl-C: stopped in the middle of an epoch"
                        self.history.add_decision(self.director.epoch, "stop", reason, "interrupt")
                        self.history.finish("interrupted")
                        return self.outcome("interrupted", reason)
                    self.director.interrupt_requested = self.watch.requested
                    self.watch.requested = False
                    decision = self.director.end_epoch(record)
                    if decision.action == "next_phase":
                        self.enter_phase()
                    elif decision.action == "stop":
                        return self.outcome("finished", decision.reason)
        finally:
            if self.scalars is not None:
                self.scalars.close()

    def outcome(self, status: str, reason: str) -> LoopOutcome:
        self.log(f"stopped after {self.director.epoch} epoch(s): {reason}")
        phases = [p["name"] for p in self.history.data["phases"]]
        return LoopOutcome(status, self.director.epoch, reason, self.history.best, phases)

    def seconds_per_epoch(self) -> float | None:
        """From the epochs so far, the first (which also builds the graphs) left out when possible."""
        records = self.director.records
        if len(records) >= 2:
            return (records[-1].elapsed_s - records[0].elapsed_s) / (len(records) - 1)
        return records[0].elapsed_s - self.loop_started if records else None

    def cosine_horizon(self) -> int:
        director = self.director
        done = director.phase_epochs - 1
        per_epoch = self.seconds_per_epoch()
        elapsed = self.history.elapsed()
        horizon = director.phase.epochs
        limits, policy = self.config.limits, self.config.policy
        budgets = [limits.time_budget_s, getattr(policy, "time_budget_s", None)]
        for budget in (b for b in budgets if b is not None):
            horizon = cosine_horizon(horizon, done, None, budget - elapsed, per_epoch)
        caps = [limits.max_epochs, getattr(policy, "max_epochs", None)]
        for cap in (c for c in caps if c is not None):
            horizon = cosine_horizon(horizon, done, cap - director.epoch + 1, None, None)
        return horizon

    def run_epoch(self) -> EpochRecord:
        """Fit and validate one epoch; save the checkpoint and history; return its record."""
        director = self.director
        epoch = director.begin_epoch()
        assert self.schedule is not None
        rate = self.schedule.before_epoch(director.phase_epochs - 1, self.cosine_horizon())
        fitted = self.model.fit(self.train_ds, validation_data=self.val_ds, initial_epoch=epoch - 1, epochs=epoch,
                                verbose=0, shuffle=False, class_weight=self.class_weight)
        logs = {k: float(v[-1]) for k, v in fitted.history.items() if k != "learning_rate"}
        self.schedule.after_epoch(epoch, logs)
        elapsed = self.history.elapsed()
        val_acc, val_loss = logs.get("val_accuracy", 0.0), logs.get("val_loss", float("inf"))
        key = (val_acc, -val_loss)
        is_best = self.best_key is None or key > self.best_key
        if is_best:
            self.best_key = key
            save_checkpoint(self.saved_model, self.checkpoint)
        phase = director.phase
        self.history.add_epoch({
            "epoch": epoch, "phase": director.phase_index, "phase_name": phase.name,
            "loss": logs.get("loss"), "accuracy": logs.get("accuracy"),
            "val_loss": val_loss, "val_accuracy": val_acc, "lr": rate, "elapsed_s": round(elapsed, 3),
        }, is_best)
        if self.scalars is not None:
            self.scalars.write(epoch, logs, rate)
        self.log(f"epoch {epoch:>3} [{phase.name}] loss {logs.get('loss', float('nan')):.4f} "
                 f"acc {logs.get('accuracy', float('nan')):.4f}  val_loss {val_loss:.4f} val_acc {val_acc:.4f}  "
                 f"lr {rate:.2e}  {elapsed:6.1f}s{'  *best*' if is_best else ''}")
        return EpochRecord(epoch, director.phase_index, val_acc, val_loss, logs.get("accuracy"), logs.get("loss"), elapsed)
