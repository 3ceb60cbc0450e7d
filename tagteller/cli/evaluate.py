"""``tagteller evaluate`` (measure a model on labelled data) and ``tagteller report`` (draw a
training run's curves). matplotlib is imported inside the commands only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from tagteller.cli.common import resolve_domain_and_model, stderr

FAILURES_LISTED = 20


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _print_evaluation(report: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True, highlight=False)
    counts = report["counts"]
    head = Table(show_header=False, box=None, pad_edge=False)
    head.add_column(style="bold")
    head.add_column()
    head.add_row("model", f"{report['model']['path']} (version {report['model']['version']})")
    head.add_row("data", f"{report['dataset']['root']} (split {report['dataset']['split']})")
    head.add_row("images", f"{counts['evaluated']} evaluated, {counts['failed']} failed to decode")
    head.add_row("accuracy", _percent(report["accuracy"]))
    head.add_row(f"top-{report['top_k']} accuracy", _percent(report["top_k_accuracy"]))
    head.add_row("macro F1", f"{report['macro_avg']['f1']:.3f}")
    head.add_row("weighted F1", f"{report['weighted_avg']['f1']:.3f}")
    head.add_row("ECE", f"{report['ece']:.3f}")
    console.print(head)

    table = Table(title=None)
    for column, justify in (("label", "left"), ("precision", "right"), ("recall", "right"),
                            ("F1", "right"), ("support", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for label, row in report["per_class"].items():
        table.add_row(label, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    console.print(table)
    for pair in report["most_confused"][:3]:
        console.print(f"confused: {pair['count']} × {pair['true']} → {pair['predicted']} "
                      f"({pair['fraction_of_true']:.0%} of {pair['true']})", markup=False)
    console.print(f"wrote {', '.join(report['files'].values())} to {out}", markup=False)


def evaluate(
    data: Path = typer.Argument(..., help="Labelled dataset, in the layout the domain declares (see `tagteller domains`)."),
    domain: str = typer.Option(..., "--domain", "-d", help="Domain of the model and the data."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Evaluate this .onnx model instead of the domain's."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for report.json and the PNGs.",
                                     show_default="./tagteller-eval-DOMAIN"),
    split: str = typer.Option("all", "--split", help="'all' images, or 'val': the validation side of the training split."),
    top_k: Optional[int] = typer.Option(None, "--top-k", "-k", min=1, help="k for top-k accuracy.",
                                       show_default="3, at most labels - 1"),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, max=1024, help="Images per inference batch."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json instead of the table."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr (default: on a terminal)."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Write the metrics only (report.json, predictions.jsonl), no PNGs; "
                                  "also what happens, with a note, when matplotlib is not installed."),
) -> None:
    """Measure a model on labelled data with the scan engine; write report.json and plots.

    Warns when the data is the data the model was trained on (its recorded data fingerprint):
    scores on training images are optimistic; ``--split val`` keeps to its validation images.

    Exit code 0 when every image was evaluated, 1 when some failed to decode (they are listed in
    report.json and left out of the scores).
    """
    from contextlib import ExitStack

    from tagteller.cli import fail
    from tagteller.engine import default_engine
    from tagteller.evaluate.evaluate import SPLITS, evaluate_dataset
    from tagteller.errors import TagtellerError
    from tagteller.evaluate.overlap import training_overlap_warning
    from tagteller.evaluate.report import INSTALL_HINT, require_plots, write_evaluation_report
    from tagteller.exitcodes import ExitCode

    if split not in SPLITS:
        raise fail(f"unknown --split {split!r}; choose from {', '.join(SPLITS)}")
    with_plots = not no_plots
    if with_plots:
        try:
            require_plots()  # known before a long run, not after it
        except TagtellerError:
            with_plots = False
            stderr.print(f"note: matplotlib is not installed, so no plots: metrics only ({INSTALL_HINT} draws them)",
                         markup=False)
    dom, model_path = resolve_domain_and_model(domain, model)
    out_dir = out if out is not None else Path(f"tagteller-eval-{dom.name}")

    with ExitStack() as stack:
        advance = None
        if progress is not False and (progress or sys.stderr.isatty()):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            bar = stack.enter_context(Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(),
                                               TimeRemainingColumn(), console=stderr.real(), transient=True))
            task = bar.add_task("evaluate", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

        evaluation = evaluate_dataset(dom, data, model_path, split=split, batch_size=batch_size,
                                      engine=default_engine(), on_result=advance)
    for sample, reason in evaluation.failures[:FAILURES_LISTED]:
        stderr.print(f"error: {sample.key}: {reason}", markup=False)
    if len(evaluation.failures) > FAILURES_LISTED:
        stderr.print(f"... and {len(evaluation.failures) - FAILURES_LISTED} more (see report.json)", markup=False)
    if evaluation.dataset.skipped:
        stderr.print(f"note: the layout skipped {len(evaluation.dataset.skipped)} file(s) (listed in report.json)",
                     markup=False)
    if evaluation.labels_not_in_model:
        stderr.print(f"note: labels the model does not know (always counted wrong): "
                     f"{', '.join(evaluation.labels_not_in_model)}", markup=False)
    overlap = training_overlap_warning(evaluation)
    if overlap:
        stderr.print(f"warning: {overlap}", markup=False)
    report = write_evaluation_report(evaluation, out_dir, top_k=top_k, with_plots=with_plots)
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        _print_evaluation(report, out_dir)
    if evaluation.failures:
        stderr.print(f"{len(evaluation.failures)} of {evaluation.selected_count} image(s) failed to decode",
                     markup=False)
        raise typer.Exit(ExitCode.FAILED)


def report(
    run_dir: Optional[Path] = typer.Argument(None, help="A training run folder (holding history.json)."),
    domain: Optional[str] = typer.Option(None, "--domain", "-d", help="Use this domain's latest run instead of RUN_DIR."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write curves.png and summary.json.",
                                     show_default="RUN_DIR"),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json instead of the table."),
) -> None:
    """Draw a training run's loss/accuracy curves per phase, with the stopping decisions marked."""
    from tagteller.cli import fail
    from tagteller.evaluate.report import TRAINING_FILES, write_training_report

    if run_dir is None and domain is None:
        raise fail("pass RUN_DIR, or --domain NAME for that domain's latest run")
    if run_dir is None:
        from tagteller import plugins
        from tagteller.runs import latest_run

        plugins.get_domain(domain)  # type: ignore[arg-type]
        run_dir = latest_run(domain)  # type: ignore[arg-type]
    summary = write_training_report(run_dir, out)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True, highlight=False)
    best = summary["best"]
    console.print(f"run {summary['run_id']} ({summary['domain']}): {summary['status']}, {summary['epochs']} epoch(s)"
                  + (f", best val accuracy {_percent(best['val_accuracy'])} at epoch {best['epoch']}" if best else ""),
                  markup=False)
    table = Table()
    for column in ("phase", "epochs", "lr", "unfreeze", "best val acc"):
        table.add_column(column)
    for p in summary["phases"]:
        table.add_row(str(p["name"]), str(p["epochs"]), str(p["learning_rate"]), str(p["unfreeze"]),
                      _percent(p["best_val_accuracy"]))
    console.print(table)
    for d in summary["decisions"]:
        console.print(f"epoch {d.get('epoch')}: {d.get('action')} ({d.get('by', 'policy')}): {d.get('reason', '')}",
                      markup=False)
    console.print(f"wrote {', '.join(TRAINING_FILES.values())} to {out or run_dir}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("report")(report)
