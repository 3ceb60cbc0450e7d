"""The interactive override: when training would stop, a person at a terminal may say otherwise.

Asked when the stopping policy says stop (or says "next phase" after the last one) and after a
Ctrl-C (once the epoch is finished and saved). The answers: ``stop``, ``continue`` N more
epochs, or ``unfreeze`` more of the backbone (the next phase, or N more blocks after the last).
``--yes``, or a stdin that is not a terminal, never asks: :class:`NeverAsk` always stops.

:class:`ConsolePrompter` uses ``rich.prompt``; tests hand it a stream of answers.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import IO, Literal, Protocol, TextIO

from rich.console import Console
from rich.prompt import IntPrompt, Prompt

Choice = Literal["stop", "continue", "unfreeze"]


@dataclass(frozen=True)
class UserChoice:
    """What the person chose: ``epochs`` for ``continue`` (and for ``unfreeze``: the epochs the
    extra phase may run), ``blocks`` for ``unfreeze`` past the last phase."""

    action: Choice
    epochs: int = 0
    blocks: int = 0


class Prompter(Protocol):
    interactive: bool

    def ask(self, situation: str, has_next_phase: bool) -> UserChoice: ...


class NeverAsk:
    """For ``--yes`` and scripts: the policy (or the interrupt) has the last word."""

    interactive = False

    def ask(self, situation: str, has_next_phase: bool) -> UserChoice:
        return UserChoice("stop")


class ConsolePrompter:
    """Asks on the console; ``stream`` replaces stdin (tests pass a ``StringIO`` of answers)."""

    interactive = True

    def __init__(self, console: Console | None = None, stream: TextIO | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.stream = stream

    def ask(self, situation: str, has_next_phase: bool) -> UserChoice:
        self.console.print(f"[bold]{situation}[/bold]")
        unfreeze_help = "the next phase" if has_next_phase else "more blocks"
        self.console.print(f"  stop | continue (N more epochs) | unfreeze ({unfreeze_help})")
        action = Prompt.ask("what now?", choices=["stop", "continue", "unfreeze"], default="stop",
                            console=self.console, stream=self.stream)
        if action == "continue":
            return UserChoice("continue", epochs=self._positive("how many more epochs?", 3))
        if action == "unfreeze":
            if has_next_phase:
                return UserChoice("unfreeze")
            blocks = self._positive("how many more blocks to unfreeze?", 2)
            return UserChoice("unfreeze", epochs=self._positive("for how many epochs?", 5), blocks=blocks)
        return UserChoice("stop")

    def _positive(self, question: str, default: int) -> int:
        while True:
            value = IntPrompt.ask(question, default=default, console=self.console, stream=self.stream)
            if value >= 1:
                return value
            self.console.print("please enter a number of at least 1")


def choose_prompter(assume_yes: bool, stdin: IO[str] | None = None) -> Prompter:
    """:class:`ConsolePrompter` when a person can answer, else :class:`NeverAsk`."""
    stdin = stdin if stdin is not None else sys.stdin
    if assume_yes or stdin is None or not stdin.isatty():
        return NeverAsk()
    return ConsolePrompter()
