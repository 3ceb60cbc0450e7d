"""``tagteller train``, ``tagteller export`` and ``tagteller data check``.

The first two need the ``train`` extra (tensorflow); it is imported inside the commands only.
``data check`` needs nothing beyond the base install.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from tagteller.cli.common import stderr

data_app = typer.Typer(help="Look at a dataset folder before training on it.", no_args_is_help=True)

TEMPERATURE_HELP = ("Calibrate with this temperature instead of fitting one on the validation split (e.g. the "
                    "recipe's, fitted over repeated splits by scripts/crossval.py: a split of a few dozen images "
                    "gives a noisy fit).")


def _need_tensorflow(command: str) -> None:
    from tagteller.cli import fail

    if importlib.util.find_spec("tensorflow") is None:
        raise fail(f"`tagteller {command}` needs the training extra: pip install 'tagteller[train]'")


def install_target_warning(domain, install_to: Path | None) -> str | None:
    """Why ``--install-to`` will not be the model ``scan --domain`` uses: it is not the file the
    domain's plugin reads (``Domain.model_path``; a relative path is relative to where ``train``
    runs, not to the plugin's package). None when it is, or when there is nothing to compare."""
    if install_to is None or domain.model_path is None:
        return None
    target, expected = Path(install_to).resolve(), Path(domain.model_path).resolve()
    if target == expected:
        return None
    return (f"--install-to {install_to} is {target}, but the {domain.name!r} domain reads its model from "
            f"{expected}: `scan --domain {domain.name}` will not use it (pass --install-to {expected}, or "
            "leave --install-to out to install it into your own models folder)")


def _log(text: str) -> None:
    stderr.print(text, markup=False, highlight=False)


def train(
    data: Path = typer.Argument(..., help="Labelled photos, in the layout the domain declares (see `tagteller domains`)."),
    domain: str = typer.Option(..., "--domain", "-d", help="Domain to train."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="At most this many epochs in this run."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", min=1, help="Stop training after this many seconds."),
    fresh: bool = typer.Option(False, "--fresh", help="Start from the backbone's weights, not from the best earlier model."),
    force: bool = typer.Option(False, "--force", help="Install the new model even when it is not better."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Never ask (scripts, CI); the stopping policy decides."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Backbone weights: imagenet, none, or a file path.",
                                          show_default="the recipe's"),
    install_to: Optional[Path] = typer.Option(None, "--install-to", help="Install the model at this path instead of the user's models folder."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="'int8': also try static int8, else float16-stored weights (each kept if top-1 drops <= 1 point); 'fp16': only the latter."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for initialisation, shuffling and augmentation (the validation split keeps the recipe's)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, max=4096, help="Images per training batch."),
    stopping: Optional[str] = typer.Option(None, "--stopping", help="Stopping policy by name (built-in or from a plugin)."),
    stop_param: list[str] = typer.Option([], "--stop-param", help="key=value for the stopping policy (repeatable)."),
    no_feedback: bool = typer.Option(False, "--no-feedback", help="Leave out the images filed with `tagteller feedback`."),
    with_taught: bool = typer.Option(False, "--with-taught", help="Add the photos of labels taught with `tagteller teach` "
                                     "(split into training and validation like the dataset): a real retrain with them."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Threads decoding images."),
    unknown_data: list[str] = typer.Option([], "--unknown-data", help="Photos that are NOT of this domain, for its open-set score: DIR, or DOMAIN=DIR to use that domain's training side only (repeatable)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help=TEMPERATURE_HELP, show_default="fitted on the validation split"),
) -> None:
    """Fine-tune the domain's model on DATA, export it to ONNX and install it if it is better.

    Exit code 0 when training finished (installed, or kept the better model in use), 1 when the
    exported model failed its parity check, 130 when stopped by a second Ctrl-C.
    """
    _need_tensorflow("train")
    from tagteller import plugins
    from tagteller.train.trainer import train_domain
    from tagteller.training_config import TrainOptions, parse_param
    from tagteller.training_prompt import choose_prompter

    dom = plugins.get_domain(domain)
    misplaced = install_target_warning(dom, install_to)
    if misplaced:
        stderr.print(f"warning: {misplaced}", markup=False)
    options = TrainOptions(
        data=data, epochs=epochs, time_budget_s=time_budget, fresh=fresh, force=force, weights=weights,
        install_to=install_to, quantize=quantize, seed=seed, batch_size=batch_size, stopping=stopping,
        stop_params=dict(parse_param(p) for p in stop_param), use_feedback=not no_feedback, use_taught=with_taught, workers=workers,
        unknown_data=list(unknown_data), temperature=temperature, command_line=shlex.join(["tagteller", *sys.argv[1:]]),
    )
    result = train_domain(dom, options, choose_prompter(yes), _log)
    figures = result.metrics
    if figures.get("val_accuracy") is not None:
        _log(f"validation: accuracy {figures['val_accuracy']:.4f}, macro-F1 {figures.get('macro_f1', 0):.4f} "
             f"on {figures.get('val_count')} images; run folder {result.run_dir}")
    _log(result.message)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def export(
    domain: str = typer.Option(..., "--domain", "-d", help="Domain the checkpoint belongs to."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="A .keras checkpoint.",
                                              show_default="best.keras of the domain's latest run"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="ONNX file to write.",
                                          show_default="model.onnx beside the checkpoint"),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="'int8': also write a static int8 model, else float16-stored weights; 'fp16': only the latter (needs --data)."),
    data: Optional[Path] = typer.Option(None, "--data", help="The training data: parity on its validation images, metrics, calibration, open-set score, int8 calibration."),
    unknown_data: list[str] = typer.Option([], "--unknown-data", help="Photos that are NOT of this domain, for its open-set score: DIR, or DOMAIN=DIR to use that domain's training side only (repeatable)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help=TEMPERATURE_HELP, show_default="fitted on the validation split"),
) -> None:
    """Export a saved Keras checkpoint to a self-describing ONNX model (parity-checked).

    Exit code 1 when the parity check fails (the file is still written, for inspection).
    """
    _need_tensorflow("export")
    from tagteller import plugins
    from tagteller.exitcodes import ExitCode
    from tagteller.train.trainer import export_checkpoint

    dom = plugins.get_domain(domain)
    exported = export_checkpoint(dom, checkpoint, output, quantize, data, _log, list(unknown_data), temperature)
    _log(f"wrote {exported.model_path}" + (f" and {exported.candidate}" if exported.candidate != exported.model_path else ""))
    if not exported.parity.passed:
        _log(f"error: {exported.model_path}: {exported.parity.describe()}")
        raise typer.Exit(ExitCode.FAILED)


@data_app.command("check")
def data_check(
    data: Path = typer.Argument(..., help="Dataset folder, in the layout the domain declares."),
    domain: str = typer.Option(..., "--domain", "-d", help="Domain whose layout and labels apply."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    decode: bool = typer.Option(True, "--decode/--no-decode", help="Decode every image (finds unreadable ones)."),
) -> None:
    """Per-label counts, imbalance, exact duplicates, skipped and unreadable files.

    Exit code 0 when every image decodes, 1 when some do not.
    """
    from tagteller import plugins
    from tagteller.datacheck import check_dataset, report_lines
    from tagteller.exitcodes import ExitCode

    report = check_dataset(plugins.get_domain(domain), data, decode=decode)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        for line in report_lines(report):
            (stderr.print(line, markup=False) if line.startswith(("warning:", "error:")) else typer.echo(line))
    if not report.ok:
        raise typer.Exit(ExitCode.FAILED)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("export")(export)
    app.add_typer(data_app, name="data")
