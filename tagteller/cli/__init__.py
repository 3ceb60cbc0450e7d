"""The ``tagteller`` command line (typer).

Each command lives in its own module here and adds itself with ``register(app)``; plugins add
theirs with the ``register_commands`` hook. Command modules import heavy libraries (tensorflow,
matplotlib, fastapi) inside the command functions only, so ``tagteller scan`` stays light.

Exit codes: :class:`tagteller.exitcodes.ExitCode`.
"""

from __future__ import annotations

import importlib
import sys

import typer
import typer.core

from tagteller.errors import TagtellerError
from tagteller.exitcodes import ExitCode

#: Built-in command modules, in help order.
COMMAND_MODULES = [
    "tagteller.cli.scan",
    "tagteller.cli.info",
    "tagteller.cli.domains",
    "tagteller.cli.plugins",
    "tagteller.cli.serve",
    "tagteller.cli.prices",
    "tagteller.cli.feedback",
    "tagteller.cli.evaluate",
    "tagteller.cli.demo",
    "tagteller.cli.train",
    "tagteller.cli.teach",
]

class _Group(typer.core.TyperGroup):
    """Turns a :class:`TagtellerError` from any command into one line on stderr and exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TagtellerError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(ExitCode.USAGE_ERROR) from None


def build_app() -> typer.Typer:
    """The root app with every built-in command and every plugin's commands."""
    app = typer.Typer(
        name="tagteller",
        help="Tell what a thing is from a photo: brand tags, shoes, book covers, products, garments.",
        cls=_Group,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root_options)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    from tagteller import plugins

    plugins.call_each("register_commands", cli=app)
    return app


def _print_version(value: bool) -> None:
    if value:
        from tagteller import __version__

        typer.echo(f"tagteller {__version__}")
        raise typer.Exit(ExitCode.OK)


def _root_options(
    version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Tell what a thing is from a photo: brand tags, shoes, book covers, products, garments."""


def fail(message: str, code: ExitCode = ExitCode.USAGE_ERROR) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def main() -> None:
    """Console-script entry point: one-line errors instead of tracebacks for known problems."""
    try:
        app = build_app()
        app(standalone_mode=True)
    except TagtellerError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(ExitCode.USAGE_ERROR)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)


def __getattr__(name: str):  # `from tagteller.cli import app` builds it on demand
    if name == "app":
        return build_app()
    raise AttributeError(name)
