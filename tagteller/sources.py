"""Turning command-line arguments (files, folders, globs) into the list of images to scan.

Folders are walked recursively without following directory symlinks (so a symlink loop cannot
trap the walk), keeping files with an image extension. Files named explicitly are always tried,
whatever their extension. An argument that matches nothing becomes an :class:`InputProblem`,
reported like any failed file.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from tagteller.datasets import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class InputProblem:
    """An argument or folder entry that could not be turned into an image to scan."""

    source: str
    reason: str


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def expand(args: list[str]) -> list[Path | InputProblem]:
    """Expand arguments in order; duplicates (same path twice) are kept only once."""
    out: list[Path | InputProblem] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = os.path.normpath(os.fsdecode(p))
        if key not in seen:
            seen.add(key)
            out.append(p)

    for arg in args:
        path = Path(arg)
        if os.path.lexists(path) and not path.is_dir():
            add(path)
        elif path.is_dir():
            for entry in walk_folder(path):
                if isinstance(entry, InputProblem):
                    out.append(entry)
                else:
                    add(entry)
        elif _has_magic(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                out.append(InputProblem(arg, "no file matches this pattern"))
            for m in matches:
                mp = Path(m)
                for entry in walk_folder(mp) if mp.is_dir() else [mp]:
                    if isinstance(entry, InputProblem):
                        out.append(entry)
                    else:
                        add(entry)
        else:
            out.append(InputProblem(arg, "no such file or folder"))
    return out


def walk_folder(folder: Path) -> list[Path | InputProblem]:
    """Image files below ``folder`` (recursive, sorted, directory symlinks not followed)."""
    found: list[Path | InputProblem] = []

    def onerror(exc: OSError) -> None:
        found.append(InputProblem(os.fsdecode(exc.filename or folder), f"cannot list folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=onerror, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
    return found
