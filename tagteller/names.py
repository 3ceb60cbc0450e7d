"""Validation of names that come from plugins, manifests or users before they become paths.

Domain names, label names and plugin names end up as file and folder names (models, feedback
inboxes, run histories). They are validated here, once, so that none can escape a folder, none is
a name Windows reserves for a device (``CON``, ``NUL``, ``COM1``...) or silently changes (a
trailing dot), and no label mixes scripts to look like another (``nіke`` with a Cyrillic ``і``).
Labels people type (feedback, typical prices) go through :func:`normalize_label` first, which
applies Unicode NFKC (``ｎｉｋｅ`` -> ``nike``) before the checks.
"""

from __future__ import annotations

import re
import unicodedata

from tagteller.errors import InvalidNameError

_DOMAIN_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Labels may be a little freer (capitals, spaces, dots, plus) but never a separator or control char.
_LABEL_RE = re.compile(r"^[^\W_][\w .+-]{0,63}$", re.UNICODE)

#: Names Windows gives to devices, with or without an extension (``con.txt`` is the console too).
RESERVED_DEVICE_NAMES = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$",
                                   *(f"COM{n}" for n in "0123456789¹²³"),
                                   *(f"LPT{n}" for n in "0123456789¹²³")})
#: Scripts that may share one label (Unicode TS #39 "highly restrictive"): Japanese, Chinese and
#: Korean writing mixes Han with its own scripts and Latin. Any other mix is refused.
_SCRIPT_MIXES_ALLOWED = (frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
                         frozenset({"LATIN", "HAN", "BOPOMOFO"}),
                         frozenset({"LATIN", "HAN", "HANGUL"}))

__all__ = ["InvalidNameError", "normalize_label", "validate_domain_name", "validate_label", "validate_labels"]


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
    if name.endswith("."):
        raise InvalidNameError(f"{what} name {name!r} ends with '.' (Windows drops it from folder names)")
    if name.split(".", 1)[0].rstrip(" ").upper() in RESERVED_DEVICE_NAMES:
        raise InvalidNameError(f"{what} name {name!r} is a device name Windows reserves "
                               "(CON, PRN, AUX, NUL, COM1-9, LPT1-9)")
    return name


def _script(ch: str) -> str | None:
    """The script of a letter, from its Unicode name (``LATIN``, ``CYRILLIC``, ``HAN``...); None
    for anything that is not a letter (digits, punctuation, spaces belong to every script)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    words = unicodedata.name(ch, "").split()
    if not words:
        return None
    first = words[0]
    if first in ("CJK", "IDEOGRAPHIC"):
        return "HAN"
    if first == "KATAKANA-HIRAGANA":
        return "KATAKANA"
    if first in ("MODIFIER", "FEMININE", "MASCULINE"):  # ª º and modifier letters: Latin-like marks
        return "LATIN"
    return first


def _check_one_script(name: str, what: str) -> None:
    scripts: dict[str, str] = {}
    for ch in name:
        script = _script(ch)
        if script is not None:
            scripts.setdefault(script, ch)
    if len(scripts) < 2 or any(set(scripts) <= allowed for allowed in _SCRIPT_MIXES_ALLOWED):
        return
    first, *others = scripts
    odd = ", ".join(f"{scripts[s]!r} is {s.title()}" for s in others)
    raise InvalidNameError(f"{what} name {name!r} mixes {first.title()} and "
                           f"{' and '.join(s.title() for s in others)} letters ({odd}): write it in one script")


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
    _check_one_script(name, "label")
    return name


def normalize_label(name: object) -> str:
    """A label a person typed, in Unicode NFKC form (fullwidth ``ｎｉｋｅ`` -> ``nike``,
    ``ﬁ`` -> ``fi``), then checked by :func:`validate_label`."""
    if isinstance(name, str):
        name = unicodedata.normalize("NFKC", name)
    return validate_label(name)


def validate_labels(labels: object) -> tuple[str, ...]:
    """Validate a sequence of labels: each valid, no duplicates, at least two."""
    if isinstance(labels, str) or not hasattr(labels, "__iter__"):
        raise InvalidNameError("labels must be a list of names")
    out = tuple(validate_label(label) for label in labels)
    if len(out) < 2:
        raise InvalidNameError(f"a classifier needs at least two labels, got {list(out)}")
    seen: set[str] = set()
    for label in out:
        if label in seen:
            raise InvalidNameError(f"label {label!r} appears twice")
        seen.add(label)
    return out
