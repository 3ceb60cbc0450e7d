"""``tagteller scan``: classify files, folders and globs with a domain's model."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import typer

from tagteller.cli.common import resolve_domain_and_model, stderr
from tagteller.engine import ScanResult, default_engine, display_name
from tagteller.output import FORMATS, make_writer, result_record
from tagteller.sources import InputProblem, expand

PROGRESS_MIN_FILES = 8


def scan(
    paths: list[str] = typer.Argument(..., help="Image files, folders (scanned recursively) or glob patterns."),
    domain: Optional[str] = typer.Option(None, "--domain", "-d", help="Domain to scan with (see `tagteller domains`)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Use this .onnx model instead of the domain's."),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="How many labels to report per image."),
    fmt: str = typer.Option("table", "--format", "-f", help=f"Output format: {', '.join(FORMATS)}."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write results to this file (atomically)."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", min=1, max=1024, help="Images per inference batch."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal and there are many files)."),
) -> None:
    """Tell what is in each image. Exit code 0 when every file scanned, 1 when some failed."""
    from tagteller.atomic import atomic_open
    from tagteller.cli import EXIT_FAILED, fail

    if fmt not in FORMATS:
        raise fail(f"unknown --format {fmt!r}; choose from {', '.join(FORMATS)}")
    dom, model_path = resolve_domain_and_model(domain, model)
    engine = default_engine()
    loaded = engine.load(model_path)
    if dom is not None and loaded.info.domain != dom.name:
        raise fail(f"{model_path}: this model is for domain {loaded.info.domain!r}, not {dom.name!r}")
    low_confidence = dom.low_confidence if dom is not None else 0.5

    items = expand(paths)
    files = [p for p in items if not isinstance(p, InputProblem)]
    problems = [p for p in items if isinstance(p, InputProblem)]
    failed = 0

    def report_failure(name: str, reason: str) -> None:
        stderr.print(f"error: {name}: {reason}", markup=False)

    with ExitStack() as stack:
        stream = stack.enter_context(atomic_open(output, "w", encoding="utf-8")) if output else sys.stdout
        writer = make_writer(fmt, stream)
        for problem in problems:
            failed += 1
            report_failure(problem.source, problem.reason)
            writer.write(result_record(ScanResult(source=problem.source, error=problem.reason,
                                                  domain=loaded.info.domain,
                                                  model_version=loaded.info.model_version)))
        show = progress if progress is not None else (sys.stderr.isatty() and len(files) >= PROGRESS_MIN_FILES)
        bar = None
        if show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            bar = stack.enter_context(Progress(TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
                                               TimeRemainingColumn(), console=stderr, transient=True))
            task = bar.add_task("scan", total=len(files))
        for result in engine.scan(loaded, files, top_k=top_k, batch_size=batch_size,
                                  names=[display_name(p) for p in files]):
            if not result.ok:
                failed += 1
                report_failure(result.source, result.error or "failed")
            writer.write(result_record(result, low_confidence))
            if bar is not None:
                bar.advance(task)
        writer.close()
    if failed:
        stderr.print(f"{failed} of {len(files) + len(problems)} input(s) failed", markup=False)
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)
