"""The feedback inbox: photos users file with the right label, which training then adds.

Layout: ``tagteller.paths.feedback_dir(domain)/<label>/<sha256 of the file's bytes>.<ext>``.

- **Content-addressed**: the name is the SHA-256 of the exact bytes, so filing the same photo
  twice is recognised ("already filed") and stores nothing new. Filing it again under another
  label moves it (the latest correction wins; one photo never teaches two answers).
- **Checked before filing**: the label is put in NFKC form and must be valid
  (:func:`tagteller.names.normalize_label`) and one of the domain's labels; a new label only
  with ``new_label=True`` and only for a domain with ``allow_new_labels`` (a label filed that
  way is known while it has photos in the inbox). The image must
  decode fully with Pillow (:func:`tagteller.imaging.open_image`) and be a JPEG, PNG, WebP, GIF,
  BMP, TIFF, AVIF or HEIC; the original bytes are stored unchanged.
- **Atomic**: files are written through :mod:`tagteller.atomic`.

:func:`feedback_samples` gives the inbox as :class:`tagteller.datasets.Sample` objects, which
``tagteller train`` adds to a domain's training data.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from tagteller import plugins
from tagteller.atomic import atomic_write_bytes
from tagteller.datasets import Sample
from tagteller.errors import ImageError, InvalidNameError, TagtellerError
from tagteller.imaging import MAX_FILE_BYTES, open_image
from tagteller.names import normalize_label, validate_domain_name, validate_label
from tagteller.paths import domain_folders, feedback_dir

#: Pillow format name -> the extension a filed image gets (all in datasets.IMAGE_EXTENSIONS).
FORMAT_EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",  # a phone's multi-picture JPEG; its first frame is an ordinary JPEG
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
    "AVIF": "avif",
    "HEIF": "heic",  # a phone photo (pillow-heif)
}
_FILED_NAME_RE = re.compile(r"^([0-9a-f]{64})\.(" + "|".join(sorted(set(FORMAT_EXTENSIONS.values()))) + r")$")

Status = Literal["filed", "already filed", "relabelled"]


class LabelRefusedError(TagtellerError):
    """A label the domain does not know (and may not learn) for a feedback image."""


@dataclass(frozen=True)
class FiledResult:
    """What filing one image did: ``status`` is ``"filed"``, ``"already filed"`` (same bytes,
    same label: nothing written) or ``"relabelled"`` (same bytes were filed under
    ``previous_label``; moved)."""

    domain: str
    label: str
    path: Path
    sha256: str
    status: Status
    previous_label: str | None = None

    @property
    def message(self) -> str:
        if self.status == "already filed":
            return f"already filed as {self.label!r} in the {self.domain} feedback inbox"
        if self.status == "relabelled":
            return f"moved from {self.previous_label!r} to {self.label!r} in the {self.domain} feedback inbox"
        return f"filed as {self.label!r} in the {self.domain} feedback inbox"

    def as_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "label": self.label, "path": str(self.path), "sha256": self.sha256,
                "status": self.status, "previous_label": self.previous_label}


@dataclass(frozen=True)
class FeedbackItem:
    """One filed image."""

    label: str
    path: Path
    sha256: str
    size: int
    filed_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "path": str(self.path), "sha256": self.sha256, "bytes": self.size,
                "filed_at": self.filed_at.isoformat(timespec="seconds")}


def _domain(domain: Any) -> Any:
    return plugins.get_domain(domain) if isinstance(domain, str) else domain


def inbox_labels(domain_name: str) -> list[str]:
    """Labels that have a folder in the domain's inbox (valid label names only), sorted."""
    folder = feedback_dir(domain_name)
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.is_symlink() and not entry.name.startswith("."):
            try:
                found.append(validate_label(entry.name))
            except InvalidNameError:
                continue
    return found


def _has_filed_photos(folder: Path) -> bool:
    return any(_FILED_NAME_RE.match(p.name) and p.is_file() and not p.is_symlink() for p in folder.iterdir())


def known_labels(domain: Any) -> list[str]:
    """The domain's labels, plus (when it allows new labels) the new ones that still have filed
    photos in its inbox: a new label whose photos were all moved to another label is gone."""
    dom = _domain(domain)
    labels = list(dom.labels)
    if dom.allow_new_labels:
        folder = feedback_dir(dom.name)
        labels += [label for label in inbox_labels(dom.name)
                   if label not in labels and _has_filed_photos(folder / label)]
    return labels


def check_label(domain: Any, label: str, new_label: bool = False) -> str:
    """Return ``label`` if an image may be filed under it; otherwise raise with the reason.

    ``label`` is first put in Unicode NFKC form (:func:`tagteller.names.normalize_label`: a
    fullwidth ``ｒｅｄ`` is ``red``); mixed scripts, a trailing dot and device names are refused.
    Known labels always pass. An unknown one needs ``new_label=True`` and a domain that allows
    new labels, and may not differ from a known label only in letter case (``Nike``/``nike``).
    """
    dom = _domain(domain)
    label = normalize_label(label)
    known = known_labels(dom)
    if label in known:
        return label
    listing = ", ".join(known)
    if not dom.allow_new_labels:
        raise LabelRefusedError(f"{label!r} is not a label of domain {dom.name!r}, which does not accept "
                                f"new labels (labels: {listing})")
    if not new_label:
        raise LabelRefusedError(f"{label!r} is not a label of domain {dom.name!r} (labels: {listing}); "
                                "pass --new-label to add it as a new one")
    clash = [k for k in known if k.casefold() == label.casefold()]
    if clash:
        raise LabelRefusedError(f"new label {label!r} differs from the existing label {clash[0]!r} only in "
                                f"letter case; use {clash[0]!r}")
    return label


def verify_image(data: bytes) -> str:
    """Decode ``data`` completely; return the extension it will be filed with.

    Raises :class:`ImageError` for empty, oversized, undecodable or truncated images and for
    formats training cannot read back.
    """
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"image is {len(data) / 1e6:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
    im = open_image(data)
    try:
        fmt = im.format
        im.load()
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode image: {exc}") from None
    finally:
        im.close()
    ext = FORMAT_EXTENSIONS.get(fmt or "")
    if ext is None:
        raise ImageError(f"{fmt} images are not filed; use JPEG, PNG, WebP, GIF, BMP, TIFF, AVIF or HEIC")
    return ext


def _find_by_digest(domain_name: str, digest: str) -> list[Path]:
    folder = feedback_dir(domain_name)
    if not folder.is_dir():
        return []
    return sorted(p for label in inbox_labels(domain_name) for p in (folder / label).glob(f"{digest}.*")
                  if _FILED_NAME_RE.match(p.name))


def file_image(domain: Any, data: bytes, label: str, new_label: bool = False) -> FiledResult:
    """File ``data`` (an image's bytes) under ``label`` in the domain's feedback inbox.

    ``domain`` is a :class:`~tagteller.domain.Domain` or a registered domain's name. Raises
    :class:`LabelRefusedError` / :class:`~tagteller.errors.InvalidNameError` for a refused label
    and :class:`~tagteller.errors.ImageError` for an image that does not decode.
    """
    dom = _domain(domain)
    label = check_label(dom, label, new_label)
    data = bytes(data)
    ext = verify_image(data)
    digest = hashlib.sha256(data).hexdigest()
    target = feedback_dir(dom.name) / label / f"{digest}.{ext}"
    if target.is_file():
        return FiledResult(dom.name, label, target, digest, "already filed")
    elsewhere = [p for p in _find_by_digest(dom.name, digest) if p.parent.name != label]
    atomic_write_bytes(target, data)
    for old in elsewhere:
        old.unlink(missing_ok=True)
    if elsewhere:
        return FiledResult(dom.name, label, target, digest, "relabelled", previous_label=elsewhere[0].parent.name)
    return FiledResult(dom.name, label, target, digest, "filed")


def file_path(domain: Any, path: str | os.PathLike[str], label: str, new_label: bool = False) -> FiledResult:
    """:func:`file_image` for a file on disk (read once, size-checked first)."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageError("is a directory")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageError(f"file is over the {MAX_FILE_BYTES // 2**20} MB limit")
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(exc.strerror.lower() if exc.strerror else exc.__class__.__name__) from None
    return file_image(domain, data, label, new_label)


def list_feedback(domain_name: str) -> list[FeedbackItem]:
    """Every filed image of the domain, by label then name. Files in the inbox that tagteller did
    not file (names that are not ``<sha256>.<ext>``) are not listed; see :func:`feedback_stats`."""
    validate_domain_name(domain_name)
    folder = feedback_dir(domain_name)
    items = []
    for label in inbox_labels(domain_name):
        for p in sorted((folder / label).iterdir()):
            match = _FILED_NAME_RE.match(p.name)
            if match is None or not p.is_file() or p.is_symlink():
                continue
            st = p.stat()
            items.append(FeedbackItem(label, p, match.group(1), st.st_size,
                                      datetime.fromtimestamp(st.st_mtime, tz=timezone.utc)))
    return items


def feedback_samples(domain_name: str) -> list[Sample]:
    """The inbox as training samples: ``key`` is ``feedback/<label>/<file name>`` (never clashes
    with a dataset's relative paths), ``label`` the folder, ``path`` the file."""
    return [Sample(key=f"feedback/{item.label}/{item.path.name}", label=item.label, path=item.path)
            for item in list_feedback(domain_name)]


def _ignored_files(domain_name: str) -> list[str]:
    folder = feedback_dir(domain_name)
    ignored = []
    for label in inbox_labels(domain_name):
        for p in sorted((folder / label).iterdir()):
            if not p.name.startswith(".") and not _FILED_NAME_RE.match(p.name):
                ignored.append(str(p))
    return ignored


def _ignored_folders(domain_name: str) -> list[dict[str, str]]:
    """Folders in the inbox whose names are no valid label (made by hand, or filed before a label
    rule was added: a device name, mixed scripts...): training ignores them, so they are said."""
    folder = feedback_dir(domain_name)
    if not folder.is_dir():
        return []
    ignored = []
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        try:
            validate_label(entry.name)
        except InvalidNameError as exc:
            ignored.append({"path": str(entry), "reason": str(exc)})
    return ignored


def feedback_stats(domain: Any) -> dict[str, Any]:
    """Counts for one domain's inbox: total, per label, labels new to the domain, bytes, the
    latest filing time, and files and folders in the inbox that are not tagteller's (ignored by
    training)."""
    name = domain if isinstance(domain, str) else domain.name
    validate_domain_name(name)
    items = list_feedback(name)
    counts: dict[str, int] = {}
    for item in items:
        counts[item.label] = counts.get(item.label, 0) + 1
    dom = domain if not isinstance(domain, str) else plugins.domains().get(name)
    new = [label for label in counts if dom is not None and label not in dom.labels]
    latest = max((item.filed_at for item in items), default=None)
    return {
        "domain": name,
        "inbox": str(feedback_dir(name)),
        "total": len(items),
        "labels": counts,
        "new_labels": new,
        "bytes": sum(item.size for item in items),
        "last_filed": latest.isoformat(timespec="seconds") if latest else None,
        "ignored_files": _ignored_files(name),
        "ignored_folders": _ignored_folders(name),
    }


def inbox_domains() -> list[str]:
    """Domains that have a feedback inbox folder, sorted."""
    return [folder.name for folder in domain_folders("feedback")]
