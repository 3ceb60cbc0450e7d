"""What a distributed scan reads: folders, globs, files and fsspec URLs to a list of files.

Local arguments (and ``file://`` URLs) go through :func:`tagteller.sources.expand`, the same
rules as an in-process scan (folders recursive, image extensions only, hidden names and directory
symlinks skipped, a file named explicitly always tried); each file is named by its absolute path.
Other URLs (``s3://bucket/prefix/``, ``gs://...``, ``https://...``) are listed with fsspec: a
prefix is walked for image files, a pattern is globbed, and each file is named by its full URL.
The size of every file is taken from the listing: ``--resume`` matches done files by name and size.
An argument that matches nothing becomes an :class:`~tagteller.sources.InputProblem`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from tagteller.datasets import IMAGE_EXTENSIONS
from tagteller.engine import display_name
from tagteller.errors import TagtellerError
from tagteller.sources import InputProblem, expand

LOCAL = "local"


@dataclass(frozen=True)
class InputFile:
    """One file to scan: ``name`` is what its record says (absolute path or URL); ``protocol``
    and ``path`` are how Ray reads it (``path`` inside the protocol's filesystem)."""

    name: str
    size: int
    protocol: str
    path: str


def is_url(arg: str) -> bool:
    return "://" in arg


def local_path(arg: str) -> str:
    """A ``file://`` URL's path; any other argument unchanged."""
    if arg.startswith("file://"):
        return unquote(urlparse(arg).path)
    return arg


def remote_filesystem(url: str) -> tuple[Any, str]:
    """fsspec's filesystem for ``url`` and the path inside it; a missing protocol driver (s3fs,
    gcsfs...) is a clear error for the whole job."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise TagtellerError(f"{url}: {exc}") from None
    except ValueError as exc:  # an unknown protocol
        raise TagtellerError(f"{url}: {exc}") from None


def list_inputs(args: list[str]) -> tuple[list[InputFile], list[InputProblem], dict[str, Any]]:
    """The files ``args`` name (in order, each once), the arguments that named nothing, and the
    fsspec filesystem of each remote protocol (local files need none)."""
    files: list[InputFile] = []
    problems: list[InputProblem] = []
    filesystems: dict[str, Any] = {}
    seen: set[str] = set()

    def add(item: InputFile) -> None:
        if item.name not in seen:
            seen.add(item.name)
            files.append(item)

    local_args = [local_path(a) for a in args if not is_url(a) or a.startswith("file://")]
    for entry in expand(local_args) if local_args else []:
        if isinstance(entry, InputProblem):
            problems.append(entry)
            continue
        _add_local(entry, add, problems)
    for url in (a for a in args if is_url(a) and not a.startswith("file://")):
        fs, root = remote_filesystem(url)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        filesystems[protocol] = fs
        found = _list_remote(fs, root)
        if found is None:
            problems.append(InputProblem(display_name(url), "no such file or folder"))
        elif not found:
            problems.append(InputProblem(display_name(url), "no image files here"))
        for path, size in found or []:
            add(InputFile(name=fs.unstrip_protocol(path), size=size, protocol=protocol, path=path))
    return files, problems, filesystems


def _add_local(entry: Path, add: Any, problems: list[InputProblem]) -> None:
    """Add one local file with its size; a file that cannot be read is a problem now, not a
    failed Ray task later."""
    name = os.path.abspath(entry)
    try:
        size = os.stat(name).st_size
        with open(name, "rb"):
            pass
    except OSError as exc:
        problems.append(InputProblem(display_name(name), f"cannot read: {exc.strerror or exc}"))
        return
    add(InputFile(name=name, size=size, protocol=LOCAL, path=name))


def _list_remote(fs: Any, root: str) -> list[tuple[str, int]] | None:
    """``(path, size)`` of the image files at ``root`` (a file, a prefix or a pattern), sorted;
    None when nothing is there."""
    if any(c in root for c in "*?["):
        entries = fs.glob(root, detail=True)
    elif fs.isdir(root):
        entries = fs.find(root, detail=True)
    elif fs.exists(root):
        info = fs.info(root)
        return [(info["name"], int(info.get("size") or 0))]
    else:
        return None
    found = []
    for path, info in sorted(entries.items()):
        if info.get("type") == "directory":
            continue
        relative = path[len(root.rstrip("/")):].strip("/").split("/")
        if any(part.startswith(".") for part in relative):  # hidden, as in a local folder walk
            continue
        if os.path.splitext(relative[-1])[1].lower() not in IMAGE_EXTENSIONS:
            continue
        found.append((path, int(info.get("size") or 0)))
    return found
