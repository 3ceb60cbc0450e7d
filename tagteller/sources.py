"""Turning command-line arguments (files, folders, globs) into the list of images to scan.

Folders are walked recursively without following directory symlinks (so a symlink loop cannot
trap the walk), keeping files with an image extension (:data:`tagteller.imaging.IMAGE_EXTENSIONS`)
and counting every other file as skipped, by reason (:func:`describe_skipped` says it); glob patterns are matched with
:meth:`pathlib.Path.glob`, whose ``**`` does not follow directory symlinks either. Files named
explicitly are always tried, whatever their extension. One directory entry reached by two routes
(a folder and a symlink to it) is scanned once. An argument that matches nothing, or a folder with
no image in it, becomes an :class:`InputProblem`, reported like any failed file.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tagteller.engine import display_name
from tagteller.imaging import IMAGE_EXTENSIONS

#: Why a file met in a folder walk was not scanned (the keys of the ``skipped`` counter).
SKIP_NOT_IMAGE = "not images"
SKIP_HIDDEN = "hidden"


@dataclass(frozen=True)
class InputProblem:
    """An argument or folder entry that could not be turned into an image to scan."""

    source: str  # printable: made with display_name, like the names of scanned files
    reason: str


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _entry_key(p: Path, real_folders: dict[str, str]) -> str:
    """The same directory entry gives the same key whichever folder symlinks led to it (a symlink
    to a file stays an entry of its own: only the folder part is resolved, once per folder)."""
    folder, name = os.path.split(os.fsdecode(p))
    if folder not in real_folders:
        real_folders[folder] = os.path.realpath(folder or ".")
    return os.path.join(real_folders[folder], name)


def _glob(pattern: str) -> list[Path]:
    """Paths matching ``pattern`` (sorted); ``**`` recurses without following directory symlinks,
    unlike :func:`glob.glob`, which loops through every symlink cycle to the kernel's limit.
    As in a shell, hidden names match only a pattern part that starts with a dot."""
    parts = Path(pattern).parts
    first = next(i for i, part in enumerate(parts) if _has_magic(part))
    base = Path(*parts[:first]) if first else Path(".")
    rest = parts[first:]
    try:
        matches = sorted(base.glob("/".join(rest)))
    except (ValueError, OSError):  # e.g. a pattern pathlib refuses; reported as matching nothing
        return []
    if any(part.startswith(".") for part in rest):
        return matches
    return [m for m in matches if not any(c.startswith(".") for c in m.relative_to(base).parts)]


def describe_skipped(skipped: Counter[str]) -> str:
    """``"3 files skipped: not images; 1 file skipped: hidden"``; empty when nothing was skipped."""
    return "; ".join(f"{n} file{'s' if n != 1 else ''} skipped: {reason}"
                     for reason, n in sorted(skipped.items()) if n)


def expand(args: list[str], skipped: Counter[str] | None = None) -> list[Path | InputProblem]:
    """Expand arguments in order; duplicates (same directory entry twice) are kept only once.
    Files in walked folders that are not scanned are counted by reason into ``skipped``."""
    skipped = Counter() if skipped is None else skipped
    out: list[Path | InputProblem] = []
    seen: set[str] = set()
    real_folders: dict[str, str] = {}

    def add_all(entries: list[Path | InputProblem]) -> int:
        """Add entries not seen before; return how many entries there were."""
        for entry in entries:
            if isinstance(entry, InputProblem):
                out.append(entry)
                continue
            key = _entry_key(entry, real_folders)
            if key not in seen:
                seen.add(key)
                out.append(entry)
        return len(entries)

    for arg in args:
        path = Path(arg)
        if os.path.lexists(path) and not path.is_dir():
            add_all([path])
        elif path.is_dir():
            if not add_all(walk_folder(path, skipped)):
                out.append(InputProblem(display_name(arg), "no image files in this folder"))
        elif _has_magic(arg):
            matches = _glob(arg)
            if not matches:
                out.append(InputProblem(display_name(arg), "no file matches this pattern"))
            found = sum(add_all(walk_folder(m, skipped) if m.is_dir() else [m]) for m in matches)
            if matches and not found:
                out.append(InputProblem(display_name(arg), "no image files match this pattern"))
        else:
            out.append(InputProblem(display_name(arg), "no such file or folder"))
    return out


def walk_folder(folder: Path, skipped: Counter[str] | None = None) -> list[Path | InputProblem]:
    """Image files below ``folder`` (recursive, sorted, directory symlinks not followed); the
    other files are counted into ``skipped`` by reason (hidden folders are not entered)."""
    skipped = Counter() if skipped is None else skipped
    found: list[Path | InputProblem] = []

    def onerror(exc: OSError) -> None:
        found.append(InputProblem(display_name(exc.filename or folder), f"cannot list folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=onerror, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                skipped[SKIP_HIDDEN] += 1
            elif os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
            else:
                skipped[SKIP_NOT_IMAGE] += 1
    return found
