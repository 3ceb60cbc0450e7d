"""Validation of names that come from plugins, manifests or users before they become paths.

Domain names, label names and plugin names end up as file and folder names (models, feedback
inboxes, run histories). They are validated here, once, so that none can escape a folder.
"""

from __future__ import annotations

import re

from tagteller.errors import InvalidNameError

_DOMAIN_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Labels may be a little freer (capitals, spaces, dots, plus) but never a separator or control char.
_LABEL_RE = re.compile(r"^[^\W_][\w .+-]{0,63}$", re.UNICODE)

__all__ = ["InvalidNameError", "validate_domain_name", "validate_label", "validate_labels"]


def _reject_common(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} name must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidNameError(f"{what} name is empty")
    if "\x00" in name:
        raise InvalidNameError(f"{what} name {name!r} contains a NUL byte")
    if "/" in name or "\\" in name:
        raise InvalidNameError(f"{what} name {name!r} contains a path separator")
    if name in (".", "..") or ".." in name:
        raise InvalidNameError(f"{what} name {name!r} contains '..'")
    return name


def validate_domain_name(name: object) -> str:
    """Return ``name`` if it is a valid domain name (lowercase, digits, ``-``/``_``; max 64)."""
    name = _reject_common(name, "domain")
    if not _DOMAIN_RE.fullmatch(name):  # fullmatch: "$" alone would let a trailing newline through
        raise InvalidNameError(
            f"domain name {name!r} is invalid: use lowercase letters, digits, '-' or '_' (max 64)"
        )
    return name


def validate_label(name: object) -> str:
    """Return ``name`` if it is a valid label: letters/digits first, then letters, digits, space,
    ``.``, ``+``, ``-`` or ``_``; at most 64 characters; no trailing space."""
    name = _reject_common(name, "label")
    if not _LABEL_RE.fullmatch(name) or name != name.strip():
        raise InvalidNameError(
            f"label {name!r} is invalid: start with a letter or digit, then letters, digits, "
            "space, '.', '+', '-' or '_' (max 64)"
        )
    return name


def validate_labels(labels: object) -> tuple[str, ...]:
    """Validate a sequence of labels: each valid, no duplicates, at least two."""
    if isinstance(labels, str) or not hasattr(labels, "__iter__"):
        raise InvalidNameError("labels must be a list of names")
    out = tuple(validate_label(label) for label in labels)  # type: ignore[union-attr]
    if len(out) < 2:
        raise InvalidNameError(f"a classifier needs at least two labels, got {list(out)}")
    seen: set[str] = set()
    for label in out:
        if label in seen:
            raise InvalidNameError(f"label {label!r} appears twice")
        seen.add(label)
    return out
