"""``tagteller feedback``: file photos with their right label (add), and see what was collected
(list, stats). The inbox itself is :mod:`tagteller.feedback`; ``tagteller train`` adds it."""

from __future__ import annotations

import json
from typing import Optional

import typer

feedback_app = typer.Typer(
    name="feedback",
    help="The feedback inbox: photos with the right label, added to training data.",
    no_args_is_help=True,
)


@feedback_app.command("add")
def add_command(
    images: list[str] = typer.Argument(..., help="Image files, folders or glob patterns, then the LABEL.",
                                       metavar="IMAGE"),
    label: str = typer.Argument(..., help="The right label for these images.", metavar="LABEL"),
    domain: str = typer.Option(..., "--domain", "-d", help="Domain whose inbox gets the images."),
    new_label: bool = typer.Option(False, "--new-label", help="LABEL is a new class (domains that allow it)."),
) -> None:
    """File IMAGE(s) under LABEL. Exit code 1 when some could not be filed."""
    from tagteller import feedback, plugins
    from tagteller.errors import ImageError
    from tagteller.exitcodes import ExitCode
    from collections import Counter

    from tagteller.sources import InputProblem, describe_skipped, expand

    dom = plugins.get_domain(domain)
    label = feedback.check_label(dom, label, new_label)
    failed = 0
    skipped: Counter[str] = Counter()
    for item in expand(images, skipped):
        if isinstance(item, InputProblem):
            failed += 1
            typer.echo(f"error: {item.source}: {item.reason}", err=True)
            continue
        try:
            filed = feedback.file_path(dom, item, label, new_label)
        except ImageError as exc:
            failed += 1
            typer.echo(f"error: {item}: {exc}", err=True)
            continue
        typer.echo(f"{item}: {filed.message}")
    if skipped:
        typer.echo(describe_skipped(skipped), err=True)
    if failed:
        typer.echo(f"{failed} image(s) not filed", err=True)
        raise typer.Exit(ExitCode.FAILED)


@feedback_app.command("list")
def list_command(
    domain: str = typer.Option(..., "--domain", "-d", help="Domain whose inbox to list."),
    label: Optional[str] = typer.Option(None, "--label", "-l", help="Only this label."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """List the filed images: label, time filed, size, file."""
    from tagteller import feedback
    from tagteller.names import validate_domain_name

    validate_domain_name(domain)
    items = [i for i in feedback.list_feedback(domain) if label is None or i.label == label]
    if as_json:
        typer.echo(json.dumps([i.as_dict() for i in items], indent=2, ensure_ascii=False))
        return
    if not items:
        typer.echo(f"no feedback filed for {domain}" + (f" under {label!r}" if label else ""))
    for i in items:
        typer.echo(f"{i.label:<24} {i.filed_at.isoformat(timespec='seconds')}  {i.size:>9} B  {i.path}")


@feedback_app.command("stats")
def stats_command(
    domain: Optional[str] = typer.Option(None, "--domain", "-d", help="Only this domain (default: every inbox)."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """How many images each label has collected, per domain."""
    from tagteller import feedback
    from tagteller.names import validate_domain_name

    names = [validate_domain_name(domain)] if domain else feedback.inbox_domains()
    stats = [feedback.feedback_stats(name) for name in names]
    if as_json:
        typer.echo(json.dumps(stats, indent=2, ensure_ascii=False))
        return
    if not stats:
        typer.echo("no feedback filed yet: `tagteller feedback add --domain NAME IMAGE LABEL` or `scan --correct`")
    for s in stats:
        new = f"; new labels: {', '.join(s['new_labels'])}" if s["new_labels"] else ""
        typer.echo(f"{s['domain']}: {s['total']} image(s){new}  ({s['inbox']})")
        for lab, count in sorted(s["labels"].items()):
            typer.echo(f"  {lab:<24} {count}")
        for path in s["ignored_files"]:
            typer.echo(f"warning: {path}: not filed by tagteller (name is not <sha256>.<ext>); training ignores it",
                       err=True)
        for ignored in s["ignored_folders"]:
            typer.echo(f"warning: {ignored['path']}: training ignores this folder: {ignored['reason']}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(feedback_app, name="feedback")
