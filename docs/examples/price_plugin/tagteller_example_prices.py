"""An example tagteller price source: how a third party publishes reference prices.

It implements the ``register_price_sources`` hook and registers one source, ``example-prices``,
whose ``lookup(domain, label)`` returns a :class:`tagteller.prices.PriceRange` or None.

The numbers in ``EXAMPLE_PRICES`` are MADE UP to show the mechanism. They are not market prices
and every range says so in its ``source`` and ``note``. A real source would read a price list it
publishes (a CSV shipped in the package, a file it downloads and caches, ...), and should be fast:
it is asked once per label per scan.
"""

from __future__ import annotations

import tagteller
from tagteller.prices import PriceRange

SOURCE_NAME = "example-prices"
SOURCE_TEXT = "example-prices (made-up example values)"

#: (domain, label) -> (low, high, currency). Made-up numbers, for demonstration only.
EXAMPLE_PRICES: dict[tuple[str, str], tuple[str, str, str]] = {
    ("clothing-tags", "adidas"): ("10", "20", "EUR"),
    ("clothing-tags", "nike"): ("30", "50", "USD"),
}


def lookup(domain: str, label: str) -> PriceRange | None:
    """The example range for ``label`` in ``domain``, or None when this source has none."""
    row = EXAMPLE_PRICES.get((domain, label))
    if row is None:
        return None
    low, high, currency = row
    return PriceRange(low=low, high=high, currency=currency, source=SOURCE_TEXT,
                      note="example value, not a real price")


@tagteller.hookimpl
def register_price_sources(register):
    register(SOURCE_NAME, lookup)
