"""``tagteller domains``: the domains the loaded plugins provide, whether each has a model, and
that model's accuracy on its own validation images (from its metadata)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def validation_metrics(model: Path | None) -> tuple[float | None, int | None, str | None]:
    """``(val_accuracy, val_count, problem)`` from a model's metadata (all None without a model)."""
    if model is None:
        return None, None, None
    from tagteller.engine import read_model_info
    from tagteller.errors import ModelError

    try:
        metrics = read_model_info(model).metrics or {}
    except ModelError as exc:
        return None, None, str(exc)
    accuracy, count = metrics.get("val_accuracy"), metrics.get("val_count")
    return (float(accuracy) if isinstance(accuracy, (int, float)) else None,
            int(count) if isinstance(count, int) else None, None)


def describe_accuracy(accuracy: float | None, count: int | None, problem: str | None) -> str:
    """``"88.0% (141 images)"``; ``"-"`` when unknown; ``"unreadable model"`` for a broken one."""
    if problem:
        return "unreadable model"
    if accuracy is None:
        return "-"
    return f"{accuracy * 100:.1f}%" + (f" ({count} images)" if count else "")


def domains(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List each domain, its labels, its plugin, whether a model is installed, and that model's
    accuracy on its validation images."""
    from rich.console import Console
    from rich.table import Table

    from tagteller import plugins

    rows = []
    for dom in plugins.domains().values():
        model = dom.resolve_model()
        accuracy, val_count, problem = validation_metrics(model)
        rows.append({
            "name": dom.name,
            "description": dom.description,
            "labels": list(dom.labels),
            "plugin": dom.plugin,
            "model": dom.model_source(),
            "model_path": str(model) if model else None,
            "layout": dom.layout.describe(),
            "allow_new_labels": dom.allow_new_labels,
            "val_accuracy": accuracy,
            "val_count": val_count,
            "model_problem": problem,
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=None)
    for column in ("domain", "model", "val. accuracy", "labels", "description"):
        table.add_column(column, overflow="fold", no_wrap=column in ("domain", "val. accuracy"))
    for row in rows:
        table.add_row(row["name"], row["model"],
                      describe_accuracy(row["val_accuracy"], row["val_count"], row["model_problem"]),
                      ", ".join(row["labels"]), row["description"])
    Console(soft_wrap=False).print(table)


def register(app: typer.Typer) -> None:
    app.command("domains")(domains)
