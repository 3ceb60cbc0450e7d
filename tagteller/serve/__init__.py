"""``tagteller serve``: the HTTP API and the phone-ready scanner page (the ``[serve]`` extra).

- :mod:`tagteller.serve.app` builds the FastAPI application (routes, error format, page).
- :mod:`tagteller.serve.service` owns the one engine per process and runs scans (and feedback
  filing) off the event loop with bounded concurrency.
- :mod:`tagteller.serve.deals` reads a scan's asking price and currency and makes the request's
  deal check (:class:`tagteller.prices.DealCheck`, which fills the record's deal fields).
- :mod:`tagteller.serve.uploads` reads one image from a request (multipart or raw body) within
  a byte limit.
- :mod:`tagteller.serve.errors` is the API's error type: a status code and a one-line reason.
- :mod:`tagteller.serve.addresses` binds the listening socket and finds the URLs to print (the
  real port, the LAN address a phone opens).
- ``static/`` is the scanner page (plain HTML, CSS and JavaScript; no CDN). The API docs pages'
  assets come from ``fastapi-offline``.

Importing this package imports nothing heavy; ``create_app`` imports FastAPI when first used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from tagteller.serve.app import create_app

        return create_app
    raise AttributeError(name)
