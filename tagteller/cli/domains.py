"""``tagteller domains``: the domains the loaded plugins provide, and whether each has a model."""

from __future__ import annotations

import json

import typer


def domains(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List each domain, its labels, its plugin, and whether a model is installed."""
    from rich.console import Console
    from rich.table import Table

    from tagteller import plugins

    rows = []
    for dom in plugins.domains().values():
        model = dom.resolve_model()
        rows.append({
            "name": dom.name,
            "description": dom.description,
            "labels": list(dom.labels),
            "plugin": dom.plugin,
            "model": dom.model_source(),
            "model_path": str(model) if model else None,
            "layout": dom.layout.describe(),
            "allow_new_labels": dom.allow_new_labels,
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=None)
    for column in ("domain", "model", "labels", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["model"], ", ".join(row["labels"]), row["description"])
    Console(soft_wrap=False).print(table)


def register(app: typer.Typer) -> None:
    app.command("domains")(domains)
