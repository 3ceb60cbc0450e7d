"""Reference prices and the deal check: "typical 60-90 EUR, you pay 12.50: about 83% below".

Owns three things:

- **The user's price list**, one CSV file per domain at
  ``tagteller.paths.config_dir()/prices/<domain>.csv`` with the columns
  ``label,low,high,currency,note`` (``tagteller prices set|list|import|remove`` edit it; it is
  plain CSV so any spreadsheet or text editor can too). Lines starting with ``#`` are comments.
- **Lookups** (:class:`PriceBook`): the user's list first, then the price sources plugins register
  through the ``register_price_sources`` hook, in registration order. The first range found wins,
  so the user's own list always overrides a plugin. A source's ``lookup(domain, label)`` returns
  a :class:`PriceRange` or None; anything else, or an exception, is reported as a plugin failure
  and that source is skipped.
- **Deal arithmetic** (:func:`compare`), all in :class:`decimal.Decimal`, never float. The saving
  is measured against the **midpoint** of the typical range: ``percent = |paid - mid| / mid * 100``,
  rounded half-up to a whole percent. A price inside the range (bounds included) is "within the
  typical range"; below ``low`` it is "about N% below", above ``high`` "about N% above"; a
  difference that rounds to 0 reads "less than 1% below/above".

Amounts are shown with their currency's minor units (2 for most, 0 for JPY, 3 for KWD...),
rounded half-up; a whole amount is shown without decimals in text ("60", not "60.00").
Prices must be more than zero; currencies are ISO 4217 codes (three letters). No currency is
ever converted: a price is compared only with a range in the same currency.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any, Literal

from tagteller import plugins
from tagteller.atomic import atomic_write_text
from tagteller.errors import InvalidNameError, TagtellerError
from tagteller.names import normalize_label, validate_domain_name, validate_label
from tagteller.paths import config_dir

#: The columns of a price list file, in order. ``currency`` and ``note`` may be left out.
COLUMNS = ("label", "low", "high", "currency", "note")
REQUIRED_COLUMNS = ("label", "low", "high")
DEFAULT_CURRENCY = "EUR"
#: Where a range from the user's own list says it came from.
USER_SOURCE = "your price list"
#: Prices at or above this are refused as typos (no thrift-shop item costs a trillion).
MAX_AMOUNT = Decimal(10) ** 12
MAX_NOTE_CHARS = 200

# ISO 4217 currencies whose minor unit is not 2 digits (the rest use 2).
_MINOR_UNITS = {
    **{code: 0 for code in ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                            "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF")},
    **{code: 3 for code in ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")},
    **{code: 4 for code in ("CLF", "UYW")},
}
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
# A price as people write it: ASCII digits, at most one '.', no exponent or digit grouping.
_PLAIN_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class PriceError(TagtellerError):
    """A price, range, currency or price-list file that cannot be used."""


# -- amounts and currencies ------------------------------------------------------------------

def parse_amount(value: object, what: str = "price") -> Decimal:
    """A positive, finite amount as a Decimal, from text like ``"12.50"`` (or an int/Decimal).

    Refuses zero, negative numbers, NaN/infinity, a comma as decimal point (ambiguous: "1,000")
    and booleans. Text must be plain ASCII digits with at most one ``.``: ``1_000``, ``1e3`` and
    other scripts' digits (``١٢``) are refused too. Floats are read through their shortest text
    form (``12.5`` -> ``"12.5"``).
    """
    if isinstance(value, bool) or value is None:
        raise PriceError(f"{what} must be a number, got {value!r}")
    typed = isinstance(value, str)  # text a person wrote (a float's repr may use an exponent)
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise PriceError(f"{what} is empty")
        if "," in text:
            raise PriceError(f"{what} {value!r}: use '.' as the decimal point and no thousands separator")
        if "_" in text:
            raise PriceError(f"{what} {value!r}: write the digits without '_' (e.g. 1000)")
        if any(ch.isdigit() and not ch.isascii() for ch in text):
            raise PriceError(f"{what} {value!r}: write it with the digits 0-9")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise PriceError(f"{what} {value!r} is not a number") from None
        if typed and amount.is_finite() and not _PLAIN_NUMBER_RE.fullmatch(text):
            raise PriceError(f"{what} {value!r}: write it as plain digits with '.' as the decimal point "
                             "(no exponent), e.g. 1000 or 12.50")
    elif isinstance(value, (int, Decimal)):
        amount = Decimal(value)
    else:
        raise PriceError(f"{what} must be a number, got {type(value).__name__}")
    if not amount.is_finite():
        raise PriceError(f"{what} {value!r} is not a finite number")
    if amount <= 0:
        raise PriceError(f"{what} must be more than 0, got {value}")
    if amount >= MAX_AMOUNT:
        raise PriceError(f"{what} {value} is implausibly large")
    return amount


def validate_currency(code: object) -> str:
    """An ISO 4217 code, upper-cased: three letters such as ``EUR``, ``USD``, ``GBP``, ``JPY``."""
    if not isinstance(code, str):
        raise PriceError(f"currency must be a three-letter code, got {code!r}")
    upper = code.strip().upper()
    if not _CURRENCY_RE.match(upper):
        raise PriceError(f"currency {code!r} is not a three-letter ISO 4217 code (e.g. EUR, USD, GBP)")
    return upper


def minor_units(currency: str) -> int:
    """How many decimals the currency uses (2 unless listed as an exception, e.g. JPY 0)."""
    return _MINOR_UNITS.get(currency, 2)


def smallest_unit(currency: str) -> Decimal:
    """The currency's smallest unit: ``0.01`` for EUR, ``1`` for JPY, ``0.001`` for KWD."""
    return Decimal(1).scaleb(-minor_units(currency))


def check_paid_unit(amount: Decimal, currency: str, what: str = "price") -> Decimal:
    """``amount`` if it is at least one of the currency's smallest units; :class:`PriceError`
    otherwise (``0.001`` EUR or ``0.5`` JPY is not a price anyone pays)."""
    unit = smallest_unit(currency)
    if amount < unit:
        raise PriceError(f"{what} {_plain(amount)} is less than the smallest {currency} unit ({_plain(unit)})")
    return amount


def check_asking_price(amount: Decimal, currency: str, what: str = "price") -> Decimal:
    """:func:`check_paid_unit`, and no more decimals than the currency has: ``1.000`` EUR is
    refused as ambiguous (one euro, or a thousand with a ``.`` thousands separator?)."""
    check_paid_unit(amount, currency, what)
    decimals = max(0, -int(amount.as_tuple().exponent))
    if decimals > minor_units(currency):
        plain = _plain(amount)
        grouped = f" (if '.' separates thousands, write {plain.replace('.', '')})" if decimals == 3 else ""
        raise PriceError(f"{what} {plain}: {currency} has {minor_units(currency)} decimals, not {decimals}{grouped}")
    return amount


def _quantize(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)


def amount_text(amount: Decimal, currency: str) -> str:
    """The amount with exactly the currency's decimals, for data: ``"12.50"``, ``"60.00"``."""
    return format(_quantize(amount, currency), "f")


def format_amount(amount: Decimal, currency: str) -> str:
    """The amount for reading: rounded to the currency's decimals; whole amounts without them
    (``"60"``, ``"12.50"``, ``"1200"`` for JPY)."""
    rounded = _quantize(amount, currency)
    if rounded == rounded.to_integral_value():
        return format(rounded.quantize(Decimal(1)), "f")
    return format(rounded, "f")


def _plain(amount: Decimal) -> str:
    """A Decimal written without exponent (``1E+2`` -> ``100``), as stored in the CSV."""
    return format(amount, "f")


# -- ranges and deals ------------------------------------------------------------------------

@dataclass(frozen=True)
class PriceRange:
    """A typical price range for one label: ``low`` to ``high`` in ``currency``.

    This is also what a plugin's price source returns. ``low`` and ``high`` may be given as
    text, int or Decimal (they are stored as Decimal); both must be more than 0 and
    ``low <= high``. ``source`` says where the range comes from (filled in with the source's
    registered name when a plugin leaves it empty); ``note`` is free text.
    """

    low: Decimal
    high: Decimal
    currency: str = DEFAULT_CURRENCY
    source: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        low = parse_amount(self.low, "low")
        high = parse_amount(self.high, "high")
        if low > high:
            raise PriceError(f"low ({_plain(low)}) is more than high ({_plain(high)})")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "currency", validate_currency(self.currency))
        check_paid_unit(low, self.currency, "low")
        note = str(self.note or "").strip()
        if "\n" in note or "\r" in note or len(note) > MAX_NOTE_CHARS:
            raise PriceError(f"note must be one line of at most {MAX_NOTE_CHARS} characters")
        object.__setattr__(self, "note", note)
        object.__setattr__(self, "source", str(self.source or ""))

    @property
    def midpoint(self) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = 34
            return (self.low + self.high) / 2

    def describe(self) -> str:
        """``"60-90 EUR"`` (or ``"60 EUR"`` when low equals high)."""
        low, high = format_amount(self.low, self.currency), format_amount(self.high, self.currency)
        span = low if low == high else f"{low}-{high}"
        return f"{span} {self.currency}"


def range_record(label: str, typical: PriceRange) -> dict[str, Any]:
    """One label's typical range as data (``tagteller prices list --json`` and the HTTP API)."""
    return {"label": label, "low": amount_text(typical.low, typical.currency),
            "high": amount_text(typical.high, typical.currency), "currency": typical.currency,
            "range": typical.describe(), "note": typical.note, "source": typical.source}


Position = Literal["below", "within", "above"]


@dataclass(frozen=True)
class Deal:
    """A paid price set against a typical range.

    ``position`` is ``"below"`` (paid < low), ``"within"`` (low <= paid <= high) or ``"above"``
    (paid > high). ``percent`` is ``|paid - midpoint| / midpoint * 100`` rounded half-up to a whole
    number (for every position; the text only shows it below or above the range).
    """

    paid: Decimal
    typical: PriceRange
    position: Position
    percent: int

    @property
    def currency(self) -> str:
        return self.typical.currency

    @property
    def text(self) -> str:
        """``"typical 60-90 EUR, you pay 12.50: about 83% below"``."""
        head = f"typical {self.typical.describe()}, you pay {format_amount(self.paid, self.currency)}"
        if self.position == "within":
            return f"{head}: within the typical range"
        amount = "less than 1%" if self.percent == 0 else f"about {self.percent}%"
        return f"{head}: {amount} {self.position}"

    def record(self) -> dict[str, Any]:
        """The fields scan output and the HTTP API carry (amounts as exact decimal strings)."""
        return {
            "price_paid": amount_text(self.paid, self.currency),
            "typical_low": amount_text(self.typical.low, self.currency),
            "typical_high": amount_text(self.typical.high, self.currency),
            "currency": self.currency,
            "deal": self.text,
            "price_source": self.typical.source,
        }


#: The keys of :meth:`Deal.record`, in the order CSV output uses.
DEAL_FIELDS = ("price_paid", "typical_low", "typical_high", "currency", "deal", "price_source")


def compare(paid: object, typical: PriceRange) -> Deal:
    """Set ``paid`` (same currency as ``typical``) against the range; see :class:`Deal`."""
    amount = parse_amount(paid, "price paid")
    if amount < typical.low:
        position: Position = "below"
    elif amount > typical.high:
        position = "above"
    else:
        position = "within"
    with localcontext() as ctx:
        ctx.prec = 34
        mid = typical.midpoint
        percent = (abs(amount - mid) / mid * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return Deal(paid=amount, typical=typical, position=position, percent=int(percent))


# -- the user's price list -------------------------------------------------------------------

def prices_dir() -> Path:
    return config_dir() / "prices"


def price_list_path(domain: str) -> Path:
    """``<config>/prices/<domain>.csv`` (it may not exist yet)."""
    return prices_dir() / f"{validate_domain_name(domain)}.csv"


@dataclass
class ParsedPrices:
    """What reading a price CSV found: the ranges by label, per-row problems, and how many rows
    named a label without any price (a filled-in template leaves those; they are skipped)."""

    entries: dict[str, PriceRange] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)  # leading "#" lines, kept on rewrite


def parse_price_csv(text: str, where: str, default_currency: str = DEFAULT_CURRENCY,
                    check_label: Callable[[str], str] | None = None, source: str = USER_SOURCE) -> ParsedPrices:
    """Parse price CSV text; problems are ``"<where>:<line>: <reason>"``, one per bad row.

    The header must name ``label``, ``low`` and ``high`` (any order, any case); ``currency``
    (default ``default_currency``) and ``note`` are optional; other columns are ignored.
    ``check_label(label)`` may refuse a label by raising :class:`TagtellerError`.
    Raises :class:`PriceError` when the file has no usable header.
    """
    out = ParsedPrices()
    lines = text.splitlines()
    in_header_comments = True
    kept: list[str] = []
    for line in lines:
        if line.lstrip().startswith("#"):
            if in_header_comments:
                out.comments.append(line)
            kept.append("")  # keep line numbers right
        else:
            if line.strip():
                in_header_comments = False
            kept.append(line)
    reader = csv.reader(kept)
    header: list[str] | None = None
    for row in reader:
        if any(cell.strip() for cell in row):
            header = [cell.strip().lower() for cell in row]
            break
    if header is None:
        raise PriceError(f"{where}: no header line (expected columns {', '.join(COLUMNS)})")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise PriceError(f"{where}: header {','.join(header)!r} lacks column(s) {', '.join(missing)} "
                         f"(expected {', '.join(COLUMNS)})")
    index = {name: header.index(name) for name in COLUMNS if name in header}
    seen_at: dict[str, int] = {}
    for row in reader:
        line_number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue

        def cell(name: str, row: list[str] = row) -> str:
            i = index.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

        label_text, low_text, high_text = cell("label"), cell("low"), cell("high")
        try:
            label = validate_label(label_text)
            if check_label is not None:
                label = check_label(label)
            if not low_text and not high_text:
                out.unpriced.append(label)
                continue
            if not low_text or not high_text:
                raise PriceError(f"{'low' if not low_text else 'high'} is empty")
            entry = PriceRange(low=parse_amount(low_text, "low"), high=parse_amount(high_text, "high"),
                               currency=cell("currency") or default_currency, source=source,
                               note=cell("note"))
            if label in seen_at:
                raise PriceError(f"label {label!r} already appears on line {seen_at[label]}")
        except TagtellerError as exc:
            out.problems.append(f"{where}:{line_number}: {exc}")
            continue
        seen_at[label] = line_number
        out.entries[label] = entry
    return out


def read_price_file(path: Path, default_currency: str = DEFAULT_CURRENCY,
                    check_label: Callable[[str], str] | None = None) -> ParsedPrices:
    """Read a price CSV file (UTF-8, a spreadsheet's byte-order mark allowed)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise PriceError(f"{path}: no such file") from None
    except OSError as exc:
        raise PriceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PriceError(f"{path}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8") from None
    return parse_price_csv(text, str(path), default_currency, check_label)


def load_price_list(domain: str) -> ParsedPrices:
    """The user's price list for ``domain`` (empty when there is none). Bad rows are skipped and
    listed in ``problems``; lookups use the good ones."""
    path = price_list_path(domain)
    if not path.is_file():
        return ParsedPrices()
    return read_price_file(path)


def _render(entries: dict[str, PriceRange], comments: Iterable[str] = ()) -> str:
    buf = io.StringIO()
    for line in comments:
        buf.write(line.rstrip("\r\n") + "\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for label in sorted(entries, key=lambda s: (s.casefold(), s)):
        r = entries[label]
        writer.writerow([label, _plain(r.low), _plain(r.high), r.currency, r.note])
    return buf.getvalue()


def _resolve_domain(domain: Any) -> Any:
    return plugins.get_domain(domain) if isinstance(domain, str) else domain


def price_label_checker(domain: Any) -> Callable[[str], str]:
    """A check that a label belongs to the domain (any valid label when it allows new labels)."""
    dom = _resolve_domain(domain)

    def check(label: str) -> str:
        label = normalize_label(label)
        if label in dom.labels or dom.allow_new_labels:
            return label
        raise InvalidNameError(f"{label!r} is not a label of domain {dom.name!r} "
                               f"(labels: {', '.join(dom.labels)})")

    return check


def _editable_list(domain_name: str) -> ParsedPrices:
    """The stored list, refusing to rewrite it while it has bad rows (they would be lost)."""
    current = load_price_list(domain_name)
    if current.problems:
        raise PriceError(f"fix or delete the bad row(s) in your price list first: {current.problems[0]}"
                         + (f" (and {len(current.problems) - 1} more)" if len(current.problems) > 1 else ""))
    return current


def set_price(domain: Any, label: str, low: object, high: object, currency: str = DEFAULT_CURRENCY,
              note: str = "") -> tuple[PriceRange, PriceRange | None]:
    """Add or replace ``label``'s typical range in the user's list; return ``(new, replaced)``."""
    dom = _resolve_domain(domain)
    label = price_label_checker(dom)(label)
    entry = PriceRange(low=parse_amount(low, "low"), high=parse_amount(high, "high"),
                       currency=currency, source=USER_SOURCE, note=note)
    current = _editable_list(dom.name)
    previous = current.entries.get(label)
    current.entries[label] = entry
    atomic_write_text(price_list_path(dom.name), _render(current.entries, current.comments))
    return entry, previous


def remove_price(domain: Any, label: str) -> PriceRange:
    """Remove ``label`` from the user's list; return what it was. :class:`PriceError` if absent."""
    dom = _resolve_domain(domain)
    label = validate_label(label)
    current = _editable_list(dom.name)
    if label not in current.entries:
        raise PriceError(f"no price for {label!r} in your {dom.name} price list")
    removed = current.entries.pop(label)
    atomic_write_text(price_list_path(dom.name), _render(current.entries, current.comments))
    return removed


@dataclass
class ImportReport:
    added: list[str]
    updated: list[str]
    unpriced: list[str]
    problems: list[str]
    path: Path


def import_prices(domain: Any, path: Path, default_currency: str = DEFAULT_CURRENCY) -> ImportReport:
    """Merge the good rows of a CSV file into the user's list (a label already there is
    replaced); bad rows are reported, one problem per row, and left out."""
    dom = _resolve_domain(domain)
    default_currency = validate_currency(default_currency)
    parsed = read_price_file(Path(path), default_currency, check_label=price_label_checker(dom))
    current = _editable_list(dom.name)
    added = [label for label in parsed.entries if label not in current.entries]
    updated = [label for label in parsed.entries if label in current.entries]
    if parsed.entries:
        current.entries.update(parsed.entries)
        atomic_write_text(price_list_path(dom.name), _render(current.entries, current.comments))
    return ImportReport(added, updated, parsed.unpriced, parsed.problems, price_list_path(dom.name))


def stored_domains() -> list[str]:
    """Domains that have a price list file, sorted."""
    folder = prices_dir()
    if not folder.is_dir():
        return []
    names = []
    for p in sorted(folder.glob("*.csv")):
        try:
            names.append(validate_domain_name(p.stem))
        except InvalidNameError:
            continue
    return names


def template(domain: Any | None = None) -> str:
    """A price-list CSV to fill in: every label of the domain with empty prices, and one
    commented example row whose numbers are made up (comments are never imported)."""
    dom = _resolve_domain(domain) if domain is not None else None
    labels = dom.labels if dom is not None else ()
    example = labels[0] if labels else "some-label"
    title = f"for domain {dom.name}" if dom is not None else ""
    lines = [
        f"# tagteller price list {title}".rstrip(),
        "# Fill in low and high: the price range YOU consider typical for each label, in your currency.",
        "# Rows left without prices are skipped on import. Lines starting with # are ignored.",
        "# EXAMPLE ONLY, made-up numbers, not a real price: "
        f"{example},10,20,{DEFAULT_CURRENCY},where this range comes from",
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for label in labels:
        writer.writerow([label, "", "", DEFAULT_CURRENCY, ""])
    return "\n".join(lines) + "\n" + buf.getvalue()


# -- lookups: the user's list, then plugin sources ------------------------------------------

class PriceBook:
    """Reference prices for one domain: the user's list first, then each plugin price source in
    registration order; the first range found (in the requested currency, if one is given) wins.

    Build one per batch (scan) or per request (server): it reads the list once, caches lookups,
    and stops asking a source that failed once (the failure is reported once, as a plugin failure).
    """

    def __init__(self, domain: str) -> None:
        self.domain = validate_domain_name(domain)
        self.user = load_price_list(self.domain)
        self.sources = dict(plugins.price_sources())
        self._failed: set[str] = set()
        self._cache: dict[tuple[str, str | None], PriceRange | None] = {}

    def _ask(self, name: str, lookup: Callable[[str, str], Any], label: str) -> PriceRange | None:
        try:
            found = lookup(self.domain, label)
        except Exception as exc:  # noqa: BLE001 - a broken price source must not break a scan
            self._fail(name, plugins.describe_error(exc))
            return None
        if found is None:
            return None
        if not isinstance(found, PriceRange):
            self._fail(name, f"lookup returned {type(found).__name__}, expected tagteller.prices.PriceRange or None")
            return None
        return found if found.source else replace(found, source=name)

    def _fail(self, name: str, reason: str) -> None:
        self._failed.add(name)
        plugins.warn_failure(plugins.PluginFailure(f"price source {name}", "price lookup", reason))

    def lookup(self, label: str, currency: str | None = None) -> PriceRange | None:
        """The typical range for ``label`` (in ``currency`` when given), or None."""
        currency = validate_currency(currency) if currency is not None else None
        key = (label, currency)
        if key in self._cache:
            return self._cache[key]
        found = None
        mine = self.user.entries.get(label)
        if mine is not None and (currency is None or mine.currency == currency):
            found = mine
        else:
            for name, lookup in self.sources.items():
                if name in self._failed:
                    continue
                candidate = self._ask(name, lookup, label)
                if candidate is not None and (currency is None or candidate.currency == currency):
                    found = candidate
                    break
        self._cache[key] = found
        return found

    def deal(self, label: str, paid: object, currency: str | None = None) -> Deal | None:
        """The deal for ``label`` at price ``paid``, or None when no range is known."""
        amount = parse_amount(paid, "price paid")
        typical = self.lookup(label, currency)
        return compare(amount, typical) if typical is not None else None


def deal_for(domain: str, label: str, paid: object, currency: str | None = None) -> Deal | None:
    """The deal check for one result (the server calls this): None when no range is known.

    Raises :class:`PriceError` for a paid price that is not a positive number.
    """
    return PriceBook(domain).deal(label, paid, currency)


def no_price_text(label: str, currency: str | None = None) -> str:
    """What a result says when neither the user's list nor any source knows ``label``."""
    return f"no typical price for {label}" + (f" in {currency}" if currency else "")


#: Every deal field of a scan record: :data:`DEAL_FIELDS`, then whether a typical price was known
#: for the label and where the price paid sits (``below``/``within``/``above``).
DEAL_RECORD_FIELDS = DEAL_FIELDS + ("typical_known", "deal_position")


class DealCheck:
    """The deal fields of scan records, for one asking price: the one place they are made (``scan
    --price``, the server's scans and ``GET /v1/deal``).

    ``paid`` None (no price given): every field is null. Otherwise each answer (an ``ok`` record
    with a label) is checked against its own domain's prices (one :class:`PriceBook` per domain);
    unknown answers and errors only carry ``price_paid``. A label without a typical price is not
    an error: ``typical_known`` is false and ``deal`` says so (:attr:`unpriced` collects them); a
    price list that cannot be read makes ``deal`` say why. An answer below its domain's confidence
    threshold (``sure`` false) prefixes the deal with "if it is LABEL:", so a guess never reads as
    an answer. ``strict_units``: without a currency, a price with more decimals than the typical
    range's currency has is refused (:func:`check_asking_price`), as the server does.
    """

    def __init__(self, paid: Decimal | None, currency: str | None = None, strict_units: bool = False) -> None:
        self.paid, self.currency, self.strict_units = paid, currency, strict_units
        self.books: dict[str, PriceBook] = {}
        #: Domain -> its answered labels that no price list or source knows.
        self.unpriced: dict[str, list[str]] = {}

    def fields(self, domain: str, record: dict[str, Any]) -> dict[str, Any]:
        """The deal fields (:data:`DEAL_RECORD_FIELDS`) for ``record`` (its ``status``,
        ``label`` and ``sure``), an answer of ``domain`` (blocking: reads the price list and asks
        plugins). Raises :class:`PriceError` for a price refused by ``strict_units``."""
        fields: dict[str, Any] = dict.fromkeys(DEAL_RECORD_FIELDS)
        if self.paid is None:
            return fields
        fields["price_paid"] = format(self.paid, "f")
        label = record.get("label")
        if record.get("status") != "ok" or not label:
            return fields
        try:
            if domain not in self.books:
                self.books[domain] = PriceBook(domain)
            deal = self.books[domain].deal(label, self.paid, self.currency)
        except TagtellerError as exc:  # e.g. a price list file without a usable header
            fields.update(currency=self.currency, typical_known=False, deal=f"cannot check the deal: {exc}")
            return fields
        if deal is None:
            unpriced = self.unpriced.setdefault(domain, [])
            if label not in unpriced:
                unpriced.append(label)
            fields.update(currency=self.currency, typical_known=False, deal=no_price_text(label, self.currency))
            return fields
        if self.strict_units and self.currency is None:  # the range's currency is known only now
            check_asking_price(self.paid, deal.currency, "price")
        fields.update(deal.record(), typical_known=True, deal_position=deal.position)
        if not record.get("sure", True):
            fields["deal"] = f"if it is {label}: {deal.text}"
        return fields
