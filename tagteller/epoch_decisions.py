"""What happens after each epoch: carry on, move to the next unfreeze phase, or stop.

Pure Python (no tensorflow), so it is tested on scripted histories. After every epoch,
:meth:`EpochDirector.end_epoch` answers, in this order:

1. Ctrl-C was pressed during the epoch: ask the person (without one: stop, ``by="interrupt"``).
2. The person chose "continue N more epochs" and those are not done yet: continue.
3. ``--epochs`` or ``--time-budget`` reached: stop. Otherwise the stopping policy's
   ``decide(TrainingState)``; a phase that has run its ``epochs`` moves on.
4. ``next_phase`` with a phase left: move to it. ``stop`` (or ``next_phase`` after the last
   phase): ask the person when there is one (:mod:`~tagteller.training_prompt`), else stop.

Every answer other than a policy's "continue" is recorded (``record(epoch, action, reason, by)``,
``by`` being ``policy``, ``user`` or ``interrupt``), as the run-history contract asks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tagteller.domain import Phase
from tagteller.stopping import Decision, EpochRecord, StoppingPolicy, TrainingState
from tagteller.training_config import Limits
from tagteller.training_prompt import Prompter, UserChoice

Recorder = Callable[[int, str, str, str], None]


class EpochDirector:
    """Keeps the phase and epoch counters and decides after each epoch (module docstring)."""

    def __init__(self, phases: Sequence[Phase], policy: StoppingPolicy, limits: Limits, prompter: Prompter,
                 record: Recorder, block_count: Callable[[], int], start_phase: int = 0) -> None:
        self.phases = list(phases)
        self.policy = policy
        self.limits = limits
        self.prompter = prompter
        self.record = record
        self.block_count = block_count
        self.phase_index = min(max(start_phase, 0), len(self.phases) - 1)
        self.epoch = 0
        self.phase_epochs = 0
        self.records: list[EpochRecord] = []
        self.continue_until = 0
        self.interrupt_requested = False

    @property
    def phase(self) -> Phase:
        return self.phases[self.phase_index]

    def has_next_phase(self) -> bool:
        return self.phase_index + 1 < len(self.phases)

    def begin_epoch(self) -> int:
        self.epoch += 1
        self.phase_epochs += 1
        return self.epoch

    def _next_phase(self) -> None:
        self.phase_index += 1
        self.phase_epochs = 0

    def end_epoch(self, record: EpochRecord) -> Decision:
        """Take the finished epoch's figures and decide. On ``next_phase`` the director has
        already moved to the new phase (:attr:`phase`)."""
        self.records.append(record)
        if self.interrupt_requested:
            self.interrupt_requested = False
            if not self.prompter.interactive:
                reason = "stopped by Ctrl-C"
                self.record(self.epoch, "stop", reason, "interrupt")
                return Decision("stop", reason)
            return self._ask(f"Ctrl-C: epoch {self.epoch} is finished and saved.")
        if self.epoch < self.continue_until:
            return Decision("continue", "continuing as asked")
        decision = self._limits_or_policy(record.elapsed_s)
        if decision.action == "continue":
            return decision
        if decision.action == "next_phase" and self.has_next_phase():
            self.record(self.epoch, "next_phase", decision.reason, "policy")
            self._next_phase()
            return decision
        reason = decision.reason if decision.action == "stop" else f"{decision.reason} (no phase left)"
        self.record(self.epoch, "stop", reason, "policy")
        if not self.prompter.interactive:
            return Decision("stop", reason)
        return self._ask(f"Training would stop after epoch {self.epoch}: {reason}.")

    def _limits_or_policy(self, elapsed: float) -> Decision:
        if self.limits.max_epochs is not None and self.epoch >= self.limits.max_epochs:
            return Decision("stop", f"--epochs {self.limits.max_epochs} reached")
        if self.limits.time_budget_s is not None and elapsed >= self.limits.time_budget_s:
            return Decision("stop", f"--time-budget {self.limits.time_budget_s:g}s used ({elapsed:.0f}s)")
        state = TrainingState(history=tuple(self.records), phase=self.phase_index,
                              has_next_phase=self.has_next_phase(), elapsed_s=elapsed)
        decision = self.policy.decide(state)
        if decision.action not in ("continue", "next_phase", "stop"):
            raise ValueError(f"stopping policy answered {decision.action!r}; expected continue, next_phase or stop")
        if decision.action == "continue" and self.phase_epochs >= self.phase.epochs:
            return Decision("next_phase" if self.has_next_phase() else "stop",
                            f"phase '{self.phase.name}' ran its {self.phase.epochs} epochs")
        return decision

    def _ask(self, situation: str) -> Decision:
        try:
            choice = self.prompter.ask(situation, self.has_next_phase())
        except (KeyboardInterrupt, EOFError):
            choice = UserChoice("stop")
        if choice.action == "continue":
            self.continue_until = self.epoch + choice.epochs
            reason = f"continue {choice.epochs} more epoch(s)"
            self.record(self.epoch, "continue", reason, "user")
            return Decision("continue", reason)
        if choice.action == "unfreeze":
            if not self.has_next_phase():
                self._add_phase_beyond_last(choice.blocks, choice.epochs)
            reason = f"unfreeze more: phase '{self.phases[self.phase_index + 1].name}'"
            self.record(self.epoch, "next_phase", reason, "user")
            self.continue_until = 0
            self._next_phase()
            return Decision("next_phase", reason)
        self.record(self.epoch, "stop", "stopped at the prompt", "user")
        return Decision("stop", "stopped at the prompt")

    def _add_phase_beyond_last(self, blocks: int, epochs: int) -> None:
        """A phase with ``blocks`` more blocks unfrozen, at half the last phase's rate."""
        last = self.phases[-1]
        if last.unfreeze == "all":
            unfreeze: int | str = "all"
        else:
            unfreeze = last.unfreeze + blocks
            if unfreeze >= self.block_count():
                unfreeze = "all"
        self.phases.append(Phase(f"{last.name}+{blocks}", unfreeze=unfreeze,  # type: ignore[arg-type]
                                 learning_rate=last.learning_rate / 2, epochs=max(1, epochs)))
