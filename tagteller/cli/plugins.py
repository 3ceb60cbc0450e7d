"""``tagteller plugins``: which plugins are loaded, their hooks, and any that failed."""

from __future__ import annotations

import json

import typer


def plugins_command(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List loaded plugins with the hooks they implement; failed plugins are listed too."""
    from tagteller import plugins

    plugins.domains()  # run the registration hooks so their failures are known
    rows = plugins.plugin_table()
    failed = [{"plugin": f.plugin, "stage": f.stage, "error": f.error} for f in plugins.failures]
    if as_json:
        typer.echo(json.dumps({"plugins": rows, "failures": failed}, indent=2))
        return
    for row in rows:
        origin = f" ({row['package']} {row['version']})" if row["package"] else ""
        typer.echo(f"{row['name']}{origin}: {', '.join(row['hooks']) or '(no hooks)'}")
    for f in failed:
        typer.echo(f"FAILED {f['plugin']} in {f['stage']}: {f['error']}")


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins_command)
