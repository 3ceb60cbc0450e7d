"""``tagteller demo``: score the ``apparel`` model on the official Fashion-MNIST test split.

The command line around :mod:`tagteller.demo`: it finds the domain's model, gets the data (the
cache, a download with a progress bar on stderr, or ``--from DIR``), scans it through the shared
engine and prints accuracy, a line per class and images/s (or all of it as JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from tagteller.cli.common import stderr

DOMAIN = "apparel"


def demo(
    from_dir: Optional[Path] = typer.Option(
        None, "--from", metavar="DIR",
        help="Read t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from DIR instead of downloading."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Scan only the first N test images."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1, max=1024, help="Images per inference batch."),
    as_json: bool = typer.Option(False, "--json", help="Print the scores as JSON."),
) -> None:
    """Download the Fashion-MNIST test split (10,000 images, checksummed, cached) and show how well
    the apparel model does on it: accuracy, per-class recall and precision, images/s."""
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    from tagteller import demo as fashion
    from tagteller import plugins
    from tagteller.cli import fail
    from tagteller.engine import default_engine
    from tagteller.errors import TagtellerError
    from tagteller.exitcodes import ExitCode

    def note(message: str) -> None:
        stderr.print(f"note: {message}", markup=False)

    try:
        domain = plugins.get_domain(DOMAIN)
        model_path = domain.resolve_model()
        if model_path is None:
            raise fail(f"no model for the {DOMAIN!r} domain is installed or shipped: train one with "
                       f"`tagteller train --domain {DOMAIN} DATA_DIR`")
        engine = default_engine()
        model = engine.load(model_path)
        domain.check_model(model.info.domain, model_path)

        if from_dir is not None:
            official = fashion.check_offline_copy(from_dir, note=note)
            folder, origin = from_dir, "from"
        else:
            folder = fashion.cache_folder()
            with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), TimeRemainingColumn(), console=stderr.real(), transient=True,
                          disable=not stderr.is_terminal) as bar:
                try:
                    fetched = fashion.cached_test_split(folder, progress=bar, note=note)
                    official, origin = True, ("download" if fetched else "cache")
                except fashion.DownloadError as exc:
                    if not (fashion.PACKAGED_SAMPLE / fashion.OFFICIAL_FILES[0].name).is_file():
                        raise
                    note(f"{exc}; meanwhile scanning {fashion.SAMPLE_DESCRIPTION}")
                    folder, official, origin = fashion.PACKAGED_SAMPLE, False, "sample"

        with Progress(TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=stderr.real(), transient=True,
                      disable=not stderr.is_terminal) as bar:
            task = bar.add_task("scan", total=None)
            result = fashion.score_model(
                engine, model, folder, domain.labels, limit=limit, batch_size=batch_size,
                on_start=lambda count: bar.update(task, total=count),
                on_result=lambda _result: bar.advance(task),
                model_path=model_path, model_version=model.info.model_version,
                model_source=domain.model_source(), data_folder=folder, data_origin=origin, official=official)
    except TagtellerError as exc:
        raise fail(str(exc)) from None

    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        for line in fashion.format_report(result):
            typer.echo(line)
    for name, reason in result.failures:
        stderr.print(f"error: {name}: {reason}", markup=False)
    if result.failures:
        raise typer.Exit(ExitCode.FAILED)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
