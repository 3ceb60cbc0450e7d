"""The learning rate within a phase: ``plateau`` (halve when validation loss stalls) or ``cosine``.

Training runs one epoch at a time (the stopping policy decides after each), so the schedule is
per epoch too. Each phase starts again from its own learning rate.

- ``plateau``: Keras' own ``ReduceLROnPlateau`` (factor 0.5, patience 2, floor at 1/100 of the
  phase's rate), fed after every epoch.
- ``cosine``: from the phase's rate down to 1/100 of it over the phase's length. The length is
  the phase's epochs, shortened to what the remaining epoch and time budgets allow (estimated
  from the epochs so far), so a run cut short by its time budget still ends on a low rate.
"""

from __future__ import annotations

import math
from typing import Any

FLOOR_FRACTION = 0.01


def cosine_rate(base: float, step: int, horizon: int, floor_fraction: float = FLOOR_FRACTION) -> float:
    """The cosine-decayed rate for epoch ``step`` (0-based) of ``horizon`` epochs."""
    floor = base * floor_fraction
    if horizon <= 1:
        return base if step == 0 else floor
    t = min(step, horizon - 1) / (horizon - 1)
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * t))


def cosine_horizon(phase_epochs: int, done_in_phase: int, epochs_left: int | None,
                   seconds_left: float | None, seconds_per_epoch: float | None) -> int:
    """How many epochs this phase will likely get, counting those already done."""
    horizon = phase_epochs
    if epochs_left is not None:
        horizon = min(horizon, done_in_phase + max(1, epochs_left))
    if seconds_left is not None and seconds_per_epoch:
        horizon = min(horizon, done_in_phase + max(1, int(seconds_left // seconds_per_epoch)))
    return max(1, horizon)


class PhaseSchedule:
    """Sets the model's learning rate before each epoch and reads the result after it."""

    def __init__(self, kind: str, base_rate: float, model: Any) -> None:
        if kind not in ("plateau", "cosine"):
            raise ValueError(f"unknown schedule {kind!r}; expected 'plateau' or 'cosine'")
        self.kind = kind
        self.base_rate = base_rate
        self.model = model
        self.reducer = None
        if kind == "plateau":
            import keras

            self.reducer = keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=2, min_lr=base_rate * FLOOR_FRACTION, verbose=0
            )
            self.reducer.set_model(model)

    def before_epoch(self, step: int, horizon: int) -> float:
        """Set and return the rate for epoch ``step`` (0-based within the phase)."""
        from tagteller.train.model import current_learning_rate, set_learning_rate

        if self.kind == "cosine":
            set_learning_rate(self.model, cosine_rate(self.base_rate, step, horizon))
        return current_learning_rate(self.model)

    def after_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        if self.reducer is not None:
            self.reducer.on_epoch_end(epoch, dict(logs))
