"""The exit codes of the ``tagteller`` command: one enum, used by every command and by training.

Modelled on pytest's ``ExitCode``: an :class:`enum.IntEnum`, so a member is the plain integer
the shell sees (``typer.Exit(ExitCode.FAILED)``, ``sys.exit(ExitCode.USAGE_ERROR)``).
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What a ``tagteller`` command exits with (README, "Exit codes")."""

    #: Everything asked for was done (an ``unknown`` answer is an answer).
    OK = 0
    #: The command ran, but some inputs failed or the result was refused (e.g. files that did not
    #: decode, a trained model that failed its parity check, a failed Ray job).
    FAILED = 1
    #: Usage or configuration error: a bad option, an unknown domain, no model, an unreadable model.
    USAGE_ERROR = 2
    #: Interrupted with Ctrl-C (128 + SIGINT, as shells report it).
    INTERRUPTED = 130
