"""The HTTP API's error: a status code and a one-line, user-facing reason.

Every error the API answers has the body ``{"status": "error", "error": REASON, "code": CODE}``
(an image that cannot be decoded answers the full scan record instead, with ``status: "error"``);
``tagteller.serve.app`` turns :class:`ApiError`, FastAPI's validation errors and Starlette's
HTTP errors into that shape.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the API refuses, with the HTTP status to answer and the reason."""

    def __init__(self, status_code: int, reason: str, headers: dict[str, str] | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.body = body  # a full body to answer instead of the default error shape

    def content(self) -> dict[str, Any]:
        if self.body is not None:
            return self.body
        return error_body(self.status_code, self.reason)


def error_body(status_code: int, reason: str) -> dict[str, Any]:
    return {"status": "error", "error": reason, "code": status_code}
