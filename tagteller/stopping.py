"""Stopping policies: when training should stop, or move on to the next unfreeze phase.

Pure Python, no tensorflow: a policy looks at the epoch history and answers with a
:class:`Decision`. Domains choose one (:attr:`tagteller.Domain.stopping`); plugins can register
more under a name with the ``register_stopping_policies`` hook, and ``tagteller train
--stopping NAME`` picks one by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Action = Literal["continue", "next_phase", "stop"]


@dataclass(frozen=True)
class EpochRecord:
    """What one finished epoch measured; ``phase`` counts from 0."""

    epoch: int
    phase: int
    val_accuracy: float
    val_loss: float | None = None
    accuracy: float | None = None
    loss: float | None = None
    elapsed_s: float = 0.0  # wall time since training started, at the end of this epoch


@dataclass(frozen=True)
class Decision:
    """A policy's answer and the reason a person can read in the log and the report."""

    action: Action
    reason: str


@dataclass(frozen=True)
class TrainingState:
    """Everything a policy may look at."""

    history: Sequence[EpochRecord]
    phase: int
    has_next_phase: bool
    elapsed_s: float


@runtime_checkable
class StoppingPolicy(Protocol):
    """Anything with ``decide(state) -> Decision`` and a ``describe() -> dict`` is a policy."""

    def decide(self, state: TrainingState) -> Decision: ...

    def describe(self) -> dict: ...


@dataclass(frozen=True)
class TargetPlateauPolicy:
    """Stop at a target validation accuracy; on a plateau move to the next phase or stop.

    - ``target_accuracy``: stop as soon as validation accuracy reaches it (None: never).
    - plateau: the best validation accuracy of the current phase has not improved by more than
      ``min_delta`` for ``patience`` epochs; then ``on_plateau`` says ``"next_phase"`` (stop when
      there is none) or ``"stop"``.
    - ``max_epochs`` over all phases, ``max_epochs_per_phase``, and ``time_budget_s`` wall time.
    """

    target_accuracy: float | None = 0.85
    patience: int = 3
    min_delta: float = 0.002
    on_plateau: Literal["next_phase", "stop"] = "next_phase"
    max_epochs: int = 50
    max_epochs_per_phase: int | None = None
    time_budget_s: float | None = None
    name: str = field(default="target-plateau")

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError("patience must be at least 1")
        if self.max_epochs < 1:
            raise ValueError("max_epochs must be at least 1")
        if self.on_plateau not in ("next_phase", "stop"):
            raise ValueError("on_plateau must be 'next_phase' or 'stop'")

    def describe(self) -> dict:
        return {
            "name": self.name,
            "target_accuracy": self.target_accuracy,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "on_plateau": self.on_plateau,
            "max_epochs": self.max_epochs,
            "max_epochs_per_phase": self.max_epochs_per_phase,
            "time_budget_s": self.time_budget_s,
        }

    def decide(self, state: TrainingState) -> Decision:
        history = list(state.history)
        if not history:
            return Decision("continue", "no epoch finished yet")
        last = history[-1]
        if self.target_accuracy is not None and last.val_accuracy >= self.target_accuracy:
            return Decision(
                "stop",
                f"reached target: val_accuracy {last.val_accuracy:.4f} >= {self.target_accuracy:.4f}",
            )
        if len(history) >= self.max_epochs:
            return Decision("stop", f"max_epochs {self.max_epochs} reached")
        if self.time_budget_s is not None:
            if state.elapsed_s >= self.time_budget_s:
                return Decision("stop", f"time budget {self.time_budget_s:.0f}s used ({state.elapsed_s:.0f}s)")
            # Stop now rather than overshoot: another epoch as long as the last would not fit.
            previous = history[-2].elapsed_s if len(history) > 1 else 0.0
            last_epoch = max(0.0, last.elapsed_s - previous)
            if last.elapsed_s > 0 and state.elapsed_s + last_epoch > self.time_budget_s:
                return Decision("stop", f"time budget {self.time_budget_s:.0f}s: another epoch "
                                        f"(~{last_epoch:.0f}s) would not fit after {state.elapsed_s:.0f}s")
        phase = [r for r in history if r.phase == state.phase]
        move_on: Action = "next_phase" if state.has_next_phase else "stop"
        if self.max_epochs_per_phase is not None and len(phase) >= self.max_epochs_per_phase:
            return Decision(move_on, f"phase {state.phase}: {len(phase)} epochs (its maximum)")
        if plateaued(phase, self.patience, self.min_delta):
            action: Action = move_on if self.on_plateau == "next_phase" else "stop"
            best = max(r.val_accuracy for r in phase)
            return Decision(
                action,
                f"plateau: no val_accuracy gain above {self.min_delta} for {self.patience} epochs "
                f"(best {best:.4f})",
            )
        return Decision("continue", f"val_accuracy {last.val_accuracy:.4f}")


def plateaued(records: Sequence[EpochRecord], patience: int, min_delta: float) -> bool:
    """True when the last ``patience`` records bring no gain above ``min_delta`` over the best
    value seen before them."""
    if len(records) <= patience:
        return False
    before = max(r.val_accuracy for r in records[:-patience])
    recent = max(r.val_accuracy for r in records[-patience:])
    return recent <= before + min_delta


BUILTIN_POLICIES = {"target-plateau": TargetPlateauPolicy}
