"""The deal check in scan answers: reading a request's asking price and currency, and checking
the deal with it (:class:`tagteller.prices.DealCheck`, the one maker of deal fields).

A scan request may carry ``price`` (what the user is asked to pay) and ``currency`` (an ISO 4217
code), each as a query parameter or a multipart form field, not both. They follow the rules of
``tagteller scan --price``/``--currency`` (:func:`tagteller.prices.parse_amount`,
:func:`tagteller.prices.validate_currency`): a price is a number more than 0 written in ASCII
digits with ``.`` as decimal point (no ``,``, ``_`` or exponent), at least one smallest unit of
its currency and with no more decimals than it has (:func:`tagteller.prices.check_asking_price`:
the given currency, else the typical range's; ``1.000`` EUR is ambiguous); ``currency`` only goes
with a price.

Every scan record carries the fields ``tagteller scan --price`` writes into JSON records
(:data:`tagteller.prices.DEAL_RECORD_FIELDS`: ``price_paid``, ``typical_low``, ``typical_high``,
``currency``, ``deal``, ``price_source``, ``typical_known`` (did the user's price list or a
plugin price source know the label?) and ``deal_position`` (``below``/``within``/``above``)). All
are null when no price was given. A label without a typical price is not an error:
``typical_known`` is false and ``deal`` says "no typical price for LABEL". A result below the
domain's confidence threshold prefixes the deal with ``if it is LABEL: ``, as the CLI does.
Unlike the CLI, a price with more decimals than the typical range's currency has is refused (400).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Optional, TypeVar

from tagteller.errors import TagtellerError
from tagteller.prices import DealCheck, PriceError, check_asking_price, parse_amount, validate_currency
from tagteller.serve.errors import ApiError

PRICE_FIELD = "price"
CURRENCY_FIELD = "currency"
#: Longest price or currency text read (longer ones are refused before parsing).
MAX_PRICE_CHARS = 32
MAX_CURRENCY_CHARS = 16
T = TypeVar("T")


@dataclass(frozen=True)
class AskingPrice:
    """What the user is asked to pay, and the currency to compare in (None: any)."""

    paid: Decimal
    currency: Optional[str]


def _given_once(name: str, query_value: Optional[str], form_value: Optional[str], max_chars: int) -> Optional[str]:
    """The stripped value from the query or the form (not both); None when absent or blank."""
    if query_value is not None and form_value is not None:
        raise ApiError(400, f"give the {name} once: in the query or in the form, not both")
    raw = query_value if query_value is not None else form_value
    if raw is None or raw.strip() == "":
        return None
    if len(raw) > max_chars:
        raise ApiError(400, f"{name} is too long (at most {max_chars} characters)")
    return raw.strip()


def _parse(price: Optional[str], currency: Optional[str]) -> tuple[Optional[Decimal], Optional[str]]:
    try:
        paid = parse_amount(price, PRICE_FIELD) if price is not None else None
        code = validate_currency(currency) if currency is not None else None
        if paid is not None and code is not None:
            check_asking_price(paid, code, PRICE_FIELD)
        return paid, code
    except TagtellerError as exc:
        raise ApiError(400, str(exc)) from None


def check_query_price(price_query: Optional[str], currency_query: Optional[str]) -> None:
    """Refuse a bad ``price`` or ``currency`` query parameter before the upload is read (the other
    one may still come in the form)."""
    _parse(_given_once(PRICE_FIELD, price_query, None, MAX_PRICE_CHARS),
           _given_once(CURRENCY_FIELD, currency_query, None, MAX_CURRENCY_CHARS))


def parse_asking_price(price_query: Optional[str], price_form: Optional[str] = None,
                       currency_query: Optional[str] = None,
                       currency_form: Optional[str] = None) -> Optional[AskingPrice]:
    """The request's asking price and currency; None without a price. Raises 400 for a bad one."""
    price = _given_once(PRICE_FIELD, price_query, price_form, MAX_PRICE_CHARS)
    currency = _given_once(CURRENCY_FIELD, currency_query, currency_form, MAX_CURRENCY_CHARS)
    paid, code = _parse(price, currency)
    if paid is None:
        if code is not None:
            raise ApiError(400, "currency goes with price: give the asking price too")
        return None
    return AskingPrice(paid=paid, currency=code)


def deal_check(asking: Optional[AskingPrice]) -> DealCheck:
    """The deal check of one request (every field null without a price); its prices with more
    decimals than the typical range's currency are refused (``strict_units``)."""
    if asking is None:
        return DealCheck(None)
    return DealCheck(asking.paid, asking.currency, strict_units=True)


def checked_deal(work: Callable[[], T]) -> T:
    """``work()`` (a record or deal fields made with :func:`deal_check`), with a refused price as
    a 400 (blocking: run it in a worker thread)."""
    try:
        return work()
    except PriceError as exc:
        raise ApiError(400, str(exc)) from None
