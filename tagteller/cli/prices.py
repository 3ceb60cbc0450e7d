"""``tagteller prices``: the user's reference-price lists (set, list, import, remove, template,
lookup). The list format and the deal arithmetic live in :mod:`tagteller.prices`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

prices_app = typer.Typer(
    name="prices",
    help="Your typical prices per label, for the deal check (`tagteller scan --price`).",
    no_args_is_help=True,
)

DOMAIN_OPTION = typer.Option(..., "--domain", "-d", help="Domain the price list belongs to.")


def _range_row(label: str, r) -> dict:
    from tagteller.prices import range_record

    return range_record(label, r)


@prices_app.command("set")
def set_command(
    label: str = typer.Argument(..., help="The label (e.g. a brand) the range is for."),
    low: str = typer.Argument(..., help="Low end of the typical price, e.g. 60."),
    high: str = typer.Argument(..., help="High end of the typical price, e.g. 90."),
    domain: str = DOMAIN_OPTION,
    currency: str = typer.Option("EUR", "--currency", "-c", help="ISO 4217 currency code."),
    note: str = typer.Option("", "--note", help="Free text kept with the row (where the range comes from)."),
) -> None:
    """Add or replace the typical price range for LABEL."""
    from tagteller import plugins
    from tagteller.prices import price_list_path, set_price

    dom = plugins.get_domain(domain)
    entry, previous = set_price(dom, label, low, high, currency, note)
    was = f" (was {previous.describe()})" if previous is not None else ""
    typer.echo(f"{label}: typical {entry.describe()}{was}; saved in {price_list_path(dom.name)}")


@prices_app.command("remove")
def remove_command(
    label: str = typer.Argument(..., help="The label to remove."),
    domain: str = DOMAIN_OPTION,
) -> None:
    """Remove LABEL from your price list."""
    from tagteller import plugins
    from tagteller.cli import fail
    from tagteller.exitcodes import ExitCode
    from tagteller.prices import PriceError, remove_price

    dom = plugins.get_domain(domain)
    try:
        removed = remove_price(dom, label)
    except PriceError as exc:
        raise fail(str(exc), ExitCode.FAILED) from None
    typer.echo(f"removed {label} (was typical {removed.describe()})")


@prices_app.command("list")
def list_command(
    domain: Optional[str] = typer.Option(None, "--domain", "-d", help="Only this domain (default: every list)."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Show your price lists, any bad rows in them, and the plugin price sources."""
    from tagteller import plugins
    from tagteller.prices import load_price_list, price_list_path, stored_domains

    if domain is not None:
        plugins.get_domain(domain)
    names = [domain] if domain is not None else stored_domains()
    sources = list(plugins.price_sources())
    lists: list[dict[str, Any]] = []
    for name in names:
        parsed = load_price_list(name)
        lists.append({
            "domain": name,
            "path": str(price_list_path(name)),
            "prices": [_range_row(label, r) for label, r in sorted(parsed.entries.items())],
            "unpriced": parsed.unpriced,
            "problems": parsed.problems,
        })
    if as_json:
        typer.echo(json.dumps({"lists": lists, "plugin_sources": sources}, indent=2, ensure_ascii=False))
        return
    if not lists:
        typer.echo("no price lists yet: add a price with `tagteller prices set --domain NAME LABEL LOW HIGH`")
    for item in lists:
        typer.echo(f"{item['domain']}  ({item['path']})")
        if not item["prices"]:
            typer.echo("  (no prices)")
        for row in item["prices"]:
            note = f"  {row['note']}" if row["note"] else ""
            typer.echo(f"  {row['label']:<24} {row['range']}{note}")
        for problem in item["problems"]:
            typer.echo(f"warning: {problem} (row ignored)", err=True)
    typer.echo("plugin price sources: " + (", ".join(sources) if sources else "none"))


@prices_app.command("import")
def import_command(
    file: Path = typer.Argument(..., help="CSV with columns label, low, high[, currency][, note]."),
    domain: str = DOMAIN_OPTION,
    currency: str = typer.Option("EUR", "--currency", "-c", help="Currency for rows that leave it empty."),
) -> None:
    """Merge a CSV file into your price list; bad rows are reported and skipped (exit code 1)."""
    from tagteller import plugins
    from tagteller.cli import fail
    from tagteller.exitcodes import ExitCode
    from tagteller.prices import PriceError, import_prices, validate_currency

    dom = plugins.get_domain(domain)
    validate_currency(currency)
    try:
        report = import_prices(dom, file, currency)
    except PriceError as exc:
        raise fail(str(exc), ExitCode.FAILED) from None
    for problem in report.problems:
        typer.echo(f"error: {problem}", err=True)
    parts = [f"imported {len(report.added) + len(report.updated)} price(s) into {report.path}"
             f" ({len(report.added)} new, {len(report.updated)} replaced)"]
    if report.unpriced:
        parts.append(f"{len(report.unpriced)} row(s) without prices skipped")
    if report.problems:
        parts.append(f"{len(report.problems)} bad row(s) skipped")
    typer.echo("; ".join(parts))
    if report.problems:
        raise typer.Exit(ExitCode.FAILED)


@prices_app.command("template")
def template_command(
    domain: Optional[str] = typer.Option(None, "--domain", "-d", help="List this domain's labels."),
) -> None:
    """Print a price-list CSV to fill in (example values are in comments and never imported)."""
    from tagteller.prices import template

    text = template(domain)
    typer.echo(text, nl=False)


@prices_app.command("lookup")
def lookup_command(
    label: str = typer.Argument(..., help="The label to look up."),
    domain: str = DOMAIN_OPTION,
    price: Optional[str] = typer.Option(None, "--price", "-p", help="A price to check against the range."),
    currency: Optional[str] = typer.Option(None, "--currency", "-c", help="Only ranges in this currency."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Show the typical range that wins for LABEL (your list, then plugin sources), and the deal."""
    from tagteller import plugins
    from tagteller.exitcodes import ExitCode
    from tagteller.prices import PriceBook, compare, no_price_text, parse_amount

    dom = plugins.get_domain(domain)
    paid = parse_amount(price, "--price") if price is not None else None
    book = PriceBook(dom.name)
    found = book.lookup(label, currency)
    deal = compare(paid, found) if found is not None and paid is not None else None
    if as_json:
        out = {"domain": dom.name, "label": label, "range": _range_row(label, found) if found else None,
               "deal": deal.record() if deal else None}
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
    elif found is None:
        typer.echo(no_price_text(label, currency))
    else:
        typer.echo(deal.text if deal else f"typical {found.describe()}")
        typer.echo(f"source: {found.source}")
    if found is None:
        raise typer.Exit(ExitCode.FAILED)


def register(app: typer.Typer) -> None:
    app.add_typer(prices_app, name="prices")
