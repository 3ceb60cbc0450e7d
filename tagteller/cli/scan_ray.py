"""``tagteller scan --engine ray``: the CLI side of a distributed scan (:mod:`tagteller.scale`).

Checks the options that a distributed scan takes (``--output DIR``, ``--format parquet|jsonl``,
``--domain`` or ``--model``), then runs the job with a progress bar on a terminal and a summary
on stderr: images, failures, images/s, per-label counts. Exit 1 when any row failed (in this
run, or an earlier one of the same job skipped by ``--resume``), 2 for a usage error or a
missing ``[ray]`` extra, 130 when interrupted by Ctrl-C or SIGTERM (the records received so far
are saved).
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
import sys
from pathlib import Path
from typing import Any

import typer

from tagteller.cli.common import DEFAULT_LOW_CONFIDENCE, resolve_domain_and_model, stderr


def scan_with_ray(paths: list[str], domain: str | None, model: Path | None, top_k: int, fmt: str | None,
                  output: Path | str | None, batch_size: int, progress: bool | None, accept_unknown: bool,
                  address: str | None, actors: int | None, resume: bool, unsupported: dict[str, Any]) -> None:
    from tagteller.cli import fail
    from tagteller.exitcodes import ExitCode
    from tagteller.scale import MISSING_EXTRA, missing_modules

    if missing_modules():
        raise fail(MISSING_EXTRA)
    given = [name for name, value in unsupported.items() if value]
    if given:
        raise fail(f"{', '.join(given)} cannot be used with --engine ray")
    if output is None:
        raise fail("--engine ray writes result shards into a folder: give --output DIR")
    output = output_location(output)
    fmt = "parquet" if fmt in (None, "table") else fmt
    if fmt not in ("parquet", "jsonl"):
        raise fail(f"--engine ray writes parquet or jsonl shards, not {fmt!r}")
    if domain is None and model is None:
        raise fail("--engine ray scans with one domain's model: give --domain NAME or --model FILE.onnx")
    if actors is not None and actors < 1:
        raise fail("--actors must be at least 1")

    from tagteller.engine import Engine
    from tagteller.scale.job import ScanPlan, prepare, ray_runtime

    dom, model_path = resolve_domain_and_model(domain, model)
    info = Engine(intra_threads=1, decode_workers=1).load(model_path).info
    if dom is not None:
        dom.check_model(info.domain, model_path)
    plan = ScanPlan(sources=list(paths), output=str(output), model_path=Path(model_path), domain=info.domain,
                    model_version=info.model_version,
                    low_confidence=dom.low_confidence if dom is not None else DEFAULT_LOW_CONFIDENCE,
                    fmt=fmt, address=address, actors=actors, top_k=top_k, batch_size=batch_size,
                    accept_unknown=accept_unknown, resume=resume)
    job = prepare(plan)
    for problem in job.problems:
        stderr.print(f"error: {problem.source}: {problem.reason}", markup=False)
    if job.skipped:
        stderr.print(f"resuming: {len(job.skipped)} file(s) already in {output}, {len(job.todo)} to scan",
                     markup=False)
    summary = job.summary
    try:
        # (nothing left to scan: no Ray to start). SIGTERM's handler goes in after ray.init's own.
        with ray_runtime(address) if job.todo else nullcontext(), _terminate_as_interrupt():
            _run(job, progress)
    except KeyboardInterrupt:
        stderr.print(f"interrupted: {summary.scanned} result(s) of this run saved in {output}; run the same "
                     "command with --resume to carry on", markup=False)
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except Exception as exc:
        reason = _ray_failure(exc)
        if reason is None:
            raise
        stderr.print(f"error: the Ray job stopped: {reason}", markup=False)
        stderr.print(f"{summary.scanned} result(s) of this run saved in {output}; once the cause is fixed, run the "
                     "same command with --resume to carry on", markup=False)
        raise typer.Exit(ExitCode.FAILED) from None
    _print_summary(summary, output)
    if summary.any_failed:
        raise typer.Exit(ExitCode.FAILED)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler stopping the job, ``kill``) ends the scan as Ctrl-C does: what was
    received is saved first."""
    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ray_failure(exc: Exception) -> str | None:
    """One line for a Ray task or actor that failed for good (a read that kept failing, the model
    failing in an actor, a lost cluster); None for anything else (a bug: let it show)."""
    import ray.exceptions
    from ray.data.exceptions import SystemException

    if not isinstance(exc, (ray.exceptions.RayError, SystemException)):
        return None
    # The original exception survives only as text in Ray's report: its last "Type: message" line
    # that is not Ray's own.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*?: ", line)
              and not line.startswith(("ray.", "RayTaskError"))]
    if causes:
        kind, _, message = causes[-1].partition(": ")
        return f"{kind.rsplit('.', 1)[-1]}: {message}"[:300]
    return lines[0][:300] if lines else exc.__class__.__name__


def output_location(output: Path | str) -> str:
    """``--output`` as given: typer hands it over as a Path, which folds ``s3://bucket`` into
    ``s3:/bucket``; put the URL back (``file:`` URLs become their local path)."""
    text = str(output)
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):/+(.*)$", text)
    if match is None or len(match.group(1)) == 1:  # not a URL (or a Windows drive letter)
        return text
    scheme, rest = match.groups()
    return "/" + rest if scheme == "file" else f"{scheme}://{rest}"


def _run(job: Any, progress: bool | None) -> None:
    """Iterate the job's results, advancing a progress bar on a terminal; print error rows."""
    from contextlib import ExitStack, closing

    show = progress if progress is not None else sys.stderr.isatty()
    with ExitStack() as stack:
        bar = task = None
        if show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            bar = stack.enter_context(Progress(TextColumn("scanning (ray)"), BarColumn(), MofNCompleteColumn(),
                                               TimeRemainingColumn(), console=stderr.real(), transient=True))
            task = bar.add_task("scan", total=len(job.todo))
        for table in stack.enter_context(closing(job.results())):
            for name, status, error in zip(*(table.column(c).to_pylist() for c in ("file", "status", "error"))):
                if status == "error":
                    stderr.print(f"error: {name}: {error}", markup=False)
            if bar is not None and task is not None:
                bar.advance(task, table.num_rows)


def _print_summary(summary: Any, output: Any) -> None:
    labels = ", ".join(f"{label} {count}" for label, count in summary.labels.most_common())
    unknown = summary.statuses.get("unknown", 0)
    parts = [f"{summary.scanned} image(s) scanned in {summary.seconds:.1f} s ({summary.rate:.1f} images/s)",
             f"{summary.failed} failed"]
    if unknown:
        parts.append(f"{unknown} unknown")
    if summary.skipped:
        parts.append(f"{summary.skipped} skipped as already done"
                     + (f" ({summary.skipped_failed} of them failed before)" if summary.skipped_failed else ""))
    stderr.print("; ".join(parts), markup=False)
    if labels:
        stderr.print(f"labels: {labels}", markup=False)
    stderr.print(f"{len(summary.shards)} shard(s) written to {output}", markup=False)
