"""``tagteller teach`` and ``tagteller forget``: add a label to a domain from a handful of photos,
in seconds and without retraining, list taught labels, and remove one. The labels themselves,
their storage and their scoring are :mod:`tagteller.taught`; scans use them automatically.
Never imports TensorFlow."""

from __future__ import annotations

import json
from typing import Optional

import typer

from tagteller.cli.common import stderr


def teach(
    label: Optional[str] = typer.Argument(None, help="The new label.", show_default=False, metavar="LABEL"),
    photos: Optional[list[str]] = typer.Argument(
        None, help="Photos of it: files, folders or glob patterns (at least 5 that decode).", show_default=False,
        metavar="PHOTO..."),
    domain: Optional[str] = typer.Option(None, "--domain", "-d", help="Domain to teach (see `tagteller domains`)."),
    from_feedback: bool = typer.Option(
        False, "--from-feedback", help="Teach LABEL from the photos filed under it in the domain's feedback inbox."),
    list_: bool = typer.Option(False, "--list", help="List taught labels (of --domain, or of every domain)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report or the list as JSON."),
) -> None:
    """Teach DOMAIN a new LABEL from 5 or more photos: their embeddings are stored in your data
    folder and every scan scores LABEL beside the model's own labels. Exit code 0 when every photo
    was taught, 1 when some failed (one line each; the rest were taught), 2 when nothing was
    (a refused label, fewer than 5 usable photos)."""
    from tagteller import plugins, taught
    from tagteller.cli import fail
    from tagteller.engine import default_engine
    from tagteller.errors import ModelError
    from tagteller.exitcodes import ExitCode
    from tagteller.sources import InputProblem, expand

    if list_:
        if label is not None or photos:
            raise fail("--list takes no LABEL or photos")
        _list(domain, as_json)
        return
    if domain is None or label is None:
        raise fail("usage: tagteller teach --domain DOMAIN LABEL PHOTO... (or --list)")
    dom = plugins.get_domain(domain)
    path = dom.resolve_model()
    if path is None:
        raise ModelError(f"no model for domain {dom.name!r}: taught labels extend a model; train or install one first")
    model = default_engine().load(path)
    failed: list[tuple[str, str]] = []
    if from_feedback and photos:
        raise fail("--from-feedback takes the photos from the inbox: give no PHOTO arguments")
    if not from_feedback and not photos:
        raise fail(f"give the photos of {label!r} (at least {taught.MIN_PHOTOS})")
    if not from_feedback:
        items = expand(photos or [])
        failed += [(p.source, p.reason) for p in items if isinstance(p, InputProblem)]
        sources = [p for p in items if not isinstance(p, InputProblem)]
    for source, reason in failed:
        stderr.print(f"error: {source}: {reason}", markup=False)
    try:
        if from_feedback:
            report = taught.teach_from_feedback(dom, model, label)
        else:
            report = taught.teach(dom, model, label, sources, [str(p) for p in sources])
    except taught.TeachError as exc:
        for source, reason in exc.failures:
            stderr.print(f"error: {source}: {reason}", markup=False)
        raise fail(str(exc)) from None
    for source, reason in report.failures:
        stderr.print(f"error: {source}: {reason}", markup=False)
    failed += report.failures
    if as_json:
        typer.echo(json.dumps({**report.as_dict(), "failed": [{"source": s, "error": e} for s, e in failed]},
                              indent=2, ensure_ascii=False))
    else:
        more = f" ({report.already} already taught)" if report.already else ""
        typer.echo(f"taught {report.label!r} to {report.domain} (model {report.model_version}): "
                   f"{report.added} new photo(s){more}, {report.total} in all")
        typer.echo(f"  {report.left_out_recognised} of {report.total} of its photos are recognised when left out "
                   f"of it; nearest own label: {report.nearest_own} (similarity {report.nearest_similarity:.2f})")
        if report.left_out_recognised < report.total:
            typer.echo("  hint: more photos, or more varied ones, make it surer")
    if failed:
        stderr.print(f"{len(failed)} photo(s) not taught", markup=False)
        raise typer.Exit(ExitCode.FAILED)


def _list(domain: Optional[str], as_json: bool) -> None:
    from tagteller import plugins, taught
    from tagteller.engine import default_engine
    from tagteller.errors import ModelError
    from tagteller.names import validate_domain_name

    names = [validate_domain_name(domain)] if domain else taught.taught_domains()
    rows = []
    for name in names:
        dom = plugins.domains().get(name)
        path = dom.resolve_model() if dom is not None else None
        model = None
        if path is not None:
            try:
                model = default_engine().load(path)
            except ModelError as exc:
                stderr.print(f"warning: {name}: {exc}", markup=False)
        rows += taught.label_status(name, model)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        where = f"domain {domain}" if domain else "any domain"
        typer.echo(f"no labels taught to {where}: `tagteller teach --domain NAME LABEL PHOTO...`")
    for row in rows:
        typer.echo(f"{row['domain']:<16} {row['label']:<24} {row['photos']:>3} photo(s)  "
                   f"taught {row['taught_at']}  {row['state']}")


def forget(
    label: str = typer.Argument(..., help="The taught label to remove."),
    domain: str = typer.Option(..., "--domain", "-d", help="Domain it was taught to."),
) -> None:
    """Remove a taught label (and its kept photos): scans no longer answer with it."""
    from tagteller import taught
    from tagteller.cli import fail
    from tagteller.names import validate_domain_name

    domain = validate_domain_name(domain)
    try:
        removed = taught.forget(domain, label)
    except taught.TeachError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"forgot {label!r} in {domain} ({removed} photo(s) removed)")


def register(app: typer.Typer) -> None:
    app.command("teach")(teach)
    app.command("forget")(forget)
