"""``tagteller info MODEL.onnx``: print what a model file says about itself."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def info(
    model: Path = typer.Argument(..., help="A tagteller .onnx model file."),
    as_json: bool = typer.Option(False, "--json", help="Print the metadata as JSON."),
) -> None:
    """Show a model's domain, labels, input, preprocessing, metrics and provenance."""
    from rich.console import Console
    from rich.table import Table

    from tagteller.engine import Engine

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
        text = ", ".join(value) if key == "labels" else (json.dumps(value) if isinstance(value, (dict, list)) else str(value))
        table.add_row(key, text)
    training = data.get("training") or {}
    for key in ("backbone", "data_fingerprint", "wall_time_s", "epochs"):
        if key in training:
            table.add_row(f"training.{key}", str(training[key]))
    Console(soft_wrap=True).print(table)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
