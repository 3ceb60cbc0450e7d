"""``tagteller info DOMAIN`` or ``tagteller info MODEL.onnx``: print what a model says about itself
(a domain's model is the one ``scan --domain`` would use: installed by ``train``, or shipped)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer


def resolve_model_argument(target: str) -> Path:
    """A model file for ``target``: an existing file (or a name ending in ``.onnx``) is the file
    itself; anything else names a domain, whose model it is. One-line errors otherwise."""
    from tagteller import plugins
    from tagteller.errors import ModelError, UnknownDomainError

    path = Path(target)
    if path.is_file() or path.suffix.lower() == ".onnx" or os.sep in target:
        return path
    try:
        domain = plugins.get_domain(target)
    except UnknownDomainError as exc:
        raise UnknownDomainError(f"{exc} (and no file {target!r} here)") from None
    model = domain.resolve_model()
    if model is None:
        raise ModelError(f"domain {domain.name!r} has no model yet: train one with "
                         f"`tagteller train --domain {domain.name} DATA_DIR`")
    return Path(model)


def info(
    target: str = typer.Argument(..., metavar="DOMAIN|MODEL.onnx",
                                 help="A domain name (see `tagteller domains`) or a tagteller .onnx model file."),
    as_json: bool = typer.Option(False, "--json", help="Print the metadata as JSON."),
) -> None:
    """Show a model's domain, labels, input, preprocessing, open-set score, calibration, metrics and
    provenance."""
    from rich.console import Console
    from rich.table import Table

    from tagteller.engine import Engine

    model = resolve_model_argument(target)
    loaded = Engine(intra_threads=1).load(model)
    data = loaded.info.as_dict()
    data["file"] = str(model)
    data["size_bytes"] = model.stat().st_size
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key in ("file", "domain", "model_version", "labels", "input", "preprocessing", "output",
                "metrics", "created", "tagteller_version", "tagteller_format", "size_bytes"):
        value = data.get(key)
        text = ", ".join(value or ()) if key == "labels" else (json.dumps(value) if isinstance(value, (dict, list)) else str(value))
        table.add_row(key, text)
    if loaded.info.open_set is not None:
        table.add_row("open_set", describe_open_set(loaded.info.open_set))
    if loaded.info.calibration is not None:
        table.add_row("calibration", describe_calibration(loaded.info.calibration))
    training = data.get("training") or {}
    for key in ("backbone", "data_fingerprint", "wall_time_s", "epochs"):
        if key in training:
            table.add_row(f"training.{key}", str(training[key]))
    Console(soft_wrap=True).print(table)


def describe_open_set(open_set: dict) -> str:
    """``open-set score 'ood_score' (knn-cosine): unknown above 0.42; 5.0% of validation images rejected``."""
    text = f"open-set score {open_set['output']!r}"
    if open_set.get("score"):
        text += f" ({open_set['score']})"
    text += f": unknown above {open_set['threshold']:.4g}"
    if "val_false_rejection" in open_set:
        text += f"; {open_set['val_false_rejection'] * 100:.1f}% of validation images rejected"
    return text


def describe_calibration(calibration: dict) -> str:
    """``temperature 1.5, ECE 0.08 -> 0.02`` (the parts the model has); ``temperature 1.5
    (given; its own split's fit: 1.2)`` for one given at training (``--temperature``)."""
    parts = []
    if "temperature" in calibration:
        given = calibration.get("temperature_fitted_here")
        parts.append(f"temperature {calibration['temperature']:.4g}"
                     + (f" (given; its own split's fit: {given:.4g})" if isinstance(given, (int, float)) else ""))
    if "ece_before" in calibration or "ece_after" in calibration:
        before, after = calibration.get("ece_before"), calibration.get("ece_after")
        shown = [f"{v:.4g}" if v is not None else "?" for v in (before, after)]
        parts.append(f"ECE {shown[0]} -> {shown[1]}")
    return ", ".join(parts) or json.dumps(calibration)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
