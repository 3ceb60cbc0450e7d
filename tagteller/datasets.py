"""Dataset layouts a domain can declare, and the deterministic train/validation split.

Four layouts, each a small frozen object whose :meth:`load` lists labelled samples without
decoding any image (decoding happens in the engine or the training pipeline, which skip and count
unreadable files):

- :class:`FolderLayout`: ``root/<label>/*.jpg`` (folder per class);
- :class:`SplitFolderLayout`: ``root/train|val|test/<label>/*`` (already split);
- :class:`IdxLayout`: MNIST-style idx arrays (``*-images-idx3-ubyte.gz`` + labels);
- :class:`CsvManifestLayout`: a CSV with a path and a label column (optionally a group column,
  so near-duplicate photos of one source never straddle the split).

Everything here is numpy + the standard library: evaluation and training share it, and it never
imports tensorflow.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import struct
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import DTypeLike

from tagteller.errors import DatasetError, InvalidNameError
from tagteller.imaging import IMAGE_EXTENSIONS  # the one list (re-exported here for layouts' users)
from tagteller.names import validate_label


@dataclass(frozen=True)
class Sample:
    """One labelled image: a file (``path``) or an in-memory array (``array``, e.g. from idx).

    ``key`` is stable across machines (a path relative to the dataset root, or an index) and is
    what splits and fingerprints are computed from; ``group`` keeps related photos together.
    """

    key: str
    label: str
    path: Path | None = None
    array: np.ndarray | None = field(default=None, compare=False, repr=False)
    group: str | None = None
    subset: str | None = None  # "train"/"val"/"test" when the layout is pre-split

    @property
    def source(self) -> Path | np.ndarray:
        """What the engine decodes: the file path, or the array."""
        if self.array is not None:
            return self.array
        assert self.path is not None
        return self.path


@dataclass
class Dataset:
    """The samples a layout found, the label order, and what it skipped (with reasons)."""

    root: Path
    labels: tuple[str, ...]
    samples: list[Sample]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(s.label for s in self.samples)
        return {label: c.get(label, 0) for label in self.labels}

    def label_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def fingerprint(self) -> str:
        """sha256 over every sample's key, label and content: changes when the data changes."""
        h = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: s.key):
            h.update(f"{s.key}\t{s.label}\t".encode("utf-8", "surrogateescape"))
            if s.array is not None:
                h.update(np.ascontiguousarray(s.array).tobytes())
            elif s.path is not None:
                try:
                    h.update(_file_digest(s.path).encode())
                except OSError as exc:
                    h.update(f"unreadable:{exc.__class__.__name__}".encode())
            h.update(b"\n")
        return h.hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@runtime_checkable
class DatasetLayout(Protocol):
    """A dataset layout: ``kind``, ``load(root, labels)`` and ``describe()``."""

    @property
    def kind(self) -> str: ...

    def load(self, root: Path, labels: Sequence[str] | None = None) -> Dataset: ...

    def describe(self) -> str: ...


def _check_root(root: Path) -> Path:
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder does not exist")
    return root


def _label_order(found: Iterable[str], declared: Sequence[str] | None) -> tuple[str, ...]:
    """Declared labels first (model output order), then any new ones found, sorted."""
    declared = tuple(declared or ())
    extra = sorted(set(found) - set(declared))
    return declared + tuple(extra)


def _walk_images(folder: Path, root: Path, skipped: list[tuple[str, str]]) -> list[Path]:
    """Image files under ``folder``, sorted; other files are recorded as skipped."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith("."):
                continue
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                out.append(p)
            else:
                skipped.append((str(p.relative_to(root)), "not an image file (by extension)"))
    return out


@dataclass(frozen=True)
class FolderLayout:
    """``root/<label>/*.jpg``: one folder per class (sub-folders inside a class are included).

    ``near_duplicates``: when set, photos of one class whose difference hashes differ in at most
    that many of 256 bits are grouped, so a split keeps them on one side
    (:mod:`tagteller.near_duplicates`; for datasets merged from sources that share photos)."""

    kind: str = "folders"
    near_duplicates: int | None = None

    def describe(self) -> str:
        grouped = (f"; near-duplicates (dHash distance <= {self.near_duplicates}) kept on one side of the split"
                   if self.near_duplicates is not None else "")
        return f"root/<label>/<image files>  (one folder per class{grouped})"

    def load(self, root: Path, labels: Sequence[str] | None = None) -> Dataset:
        root = _check_root(root)
        skipped: list[tuple[str, str]] = []
        samples = self._load_folder(root, root, skipped, subset=None)
        if not samples:
            raise DatasetError(f"{root}: no images found in any <label>/ sub-folder")
        if self.near_duplicates is not None:
            from tagteller.near_duplicates import group_near_duplicates

            samples = group_near_duplicates(samples, self.near_duplicates)
        return Dataset(root, _label_order((s.label for s in samples), labels), samples, skipped)

    @staticmethod
    def _load_folder(folder: Path, root: Path, skipped: list[tuple[str, str]], subset: str | None) -> list[Sample]:
        samples: list[Sample] = []
        for entry in sorted(folder.iterdir()):
            if not entry.is_dir() or entry.name.startswith("."):
                if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_EXTENSIONS:
                    skipped.append((str(entry.relative_to(root)), "image outside any <label>/ folder"))
                continue
            try:
                label = validate_label(entry.name)
            except InvalidNameError as exc:
                skipped.append((str(entry.relative_to(root)), f"folder is not a valid label: {exc}"))
                continue
            for p in _walk_images(entry, root, skipped):
                key = p.relative_to(root).as_posix()
                samples.append(Sample(key=key, label=label, path=p, subset=subset))
        return samples


@dataclass(frozen=True)
class SplitFolderLayout:
    """``root/train|val|test/<label>/*``: already split; ``test`` is optional."""

    train: str = "train"
    val: str = "val"
    test: str = "test"
    kind: str = "split-folders"

    def describe(self) -> str:
        return f"root/{{{self.train},{self.val},{self.test}}}/<label>/<image files>"

    def load(self, root: Path, labels: Sequence[str] | None = None) -> Dataset:
        root = _check_root(root)
        skipped: list[tuple[str, str]] = []
        samples: list[Sample] = []
        for subset, folder in (("train", self.train), ("val", self.val), ("test", self.test)):
            path = root / folder
            if path.is_dir():
                samples += FolderLayout._load_folder(path, root, skipped, subset=subset)
            elif subset != "test":
                raise DatasetError(f"{root}: missing the '{folder}/' folder this layout needs")
        if not samples:
            raise DatasetError(f"{root}: no images found")
        return Dataset(root, _label_order((s.label for s in samples), labels), samples, skipped)


def read_idx(path: Path) -> np.ndarray:
    """Read an MNIST-style idx file (optionally gzipped) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read idx file: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: not an idx file (bad magic number)")
    dtypes: dict[int, DTypeLike] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise DatasetError(f"{path}: unsupported idx data type 0x{data[2]:02x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated idx header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(dtypes[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(f"{path}: idx payload is {len(data) - header} bytes, header says {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped (``.gz``) or plain idx file (tests and tools use it)."""
    from tagteller.atomic import atomic_write_bytes

    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    atomic_write_bytes(path, gzip.compress(payload) if str(path).endswith(".gz") else payload)


@dataclass(frozen=True)
class IdxLayout:
    """MNIST-style idx arrays: an images file (N x H x W uint8) and a labels file (N uint8).

    ``class_names`` maps label numbers to names. ``prefix`` picks the split (``train``/``t10k``).
    """

    class_names: tuple[str, ...] = ()
    prefix: str = "train"
    images: str = "{prefix}-images-idx3-ubyte.gz"
    labels_file: str = "{prefix}-labels-idx1-ubyte.gz"
    kind: str = "idx"

    def describe(self) -> str:
        return f"root/{self.images.format(prefix=self.prefix)} + root/{self.labels_file.format(prefix=self.prefix)}"

    def load(self, root: Path, labels: Sequence[str] | None = None) -> Dataset:
        root = _check_root(root)
        names = tuple(labels or self.class_names)
        images_path = root / self.images.format(prefix=self.prefix)
        labels_path = root / self.labels_file.format(prefix=self.prefix)
        for p in (images_path, labels_path):
            if not p.is_file():
                raise DatasetError(f"{p}: missing (layout: {self.describe()})")
        images = read_idx(images_path)
        numbers = read_idx(labels_path)
        if images.ndim != 3 or numbers.ndim != 1 or len(images) != len(numbers):
            raise DatasetError(
                f"{root}: idx shapes do not fit: images {images.shape}, labels {numbers.shape}"
            )
        if not names:
            names = tuple(str(i) for i in range(int(numbers.max()) + 1))
        if int(numbers.max()) >= len(names):
            raise DatasetError(f"{labels_path}: label {int(numbers.max())} but only {len(names)} class names")
        samples = [
            Sample(key=f"{self.prefix}:{i}", label=names[int(n)], array=images[i])
            for i, n in enumerate(numbers)
        ]
        return Dataset(root, names, samples, [])


@dataclass(frozen=True)
class CsvManifestLayout:
    """A CSV manifest: ``path`` (relative to the CSV's folder) and ``label`` columns, optionally a
    ``group`` column (photos of one source stay on one side of the split)."""

    manifest: str = "manifest.csv"
    path_column: str = "path"
    label_column: str = "label"
    group_column: str | None = None
    kind: str = "csv"

    def describe(self) -> str:
        group = f", {self.group_column}" if self.group_column else ""
        return f"root/{self.manifest} with columns {self.path_column}, {self.label_column}{group}"

    def load(self, root: Path, labels: Sequence[str] | None = None) -> Dataset:
        root = _check_root(root)
        manifest = root / self.manifest if root.is_dir() else root
        base = manifest.parent
        if not manifest.is_file():
            raise DatasetError(f"{manifest}: manifest not found (layout: {self.describe()})")
        samples: list[Sample] = []
        skipped: list[tuple[str, str]] = []
        base_resolved = base.resolve()
        with open(manifest, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            need = [self.path_column, self.label_column] + ([self.group_column] if self.group_column else [])
            missing = [c for c in need if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{manifest}: missing column(s) {missing}")
            for line, row in enumerate(reader, start=2):
                rel = row[self.path_column] or ""
                where = f"{manifest.name}:{line}"
                try:
                    label = validate_label(row[self.label_column])
                except InvalidNameError as exc:
                    skipped.append((where, str(exc)))
                    continue
                if not rel or os.path.isabs(rel) or "\x00" in rel or not (base / rel).resolve().is_relative_to(base_resolved):
                    skipped.append((where, f"path {rel!r} is outside the dataset folder"))
                    continue
                path = (base / rel).resolve()
                if not path.is_file():
                    skipped.append((where, f"{rel}: file not found"))
                    continue
                group = row[self.group_column] if self.group_column else None
                samples.append(Sample(key=Path(rel).as_posix(), label=label, path=path, group=group or None))
        if not samples:
            raise DatasetError(f"{manifest}: no usable rows")
        return Dataset(root, _label_order((s.label for s in samples), labels), samples, skipped)


def _rank(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}:{text}".encode("utf-8", "surrogateescape")).hexdigest()


def stratified_split(
    samples: Sequence[Sample], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Deterministic stratified, group-aware train/validation split.

    Pre-split samples (``subset`` set) keep their subset (``test`` is left out of both). Otherwise,
    per label, whole groups (a sample without a group is its own group) are ordered by a seeded
    hash of their id and moved to validation until ``val_fraction`` of that label is reached.
    The result depends only on keys, labels, groups and the seed, not on file order.
    """
    if any(s.subset for s in samples):
        return [s for s in samples if s.subset == "train"], [s for s in samples if s.subset == "val"]
    by_label: dict[str, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        by_label[s.label][s.group or f"key:{s.key}"].append(s)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted(by_label):
        groups = by_label[label]
        total = sum(len(g) for g in groups.values())
        want = max(1, round(total * val_fraction)) if total > 1 else 0
        taken = 0
        for gid in sorted(groups, key=lambda g: _rank(seed, f"{label}/{g}")):
            members = groups[gid]
            # A group that would overshoot the target by half again is passed over for a smaller one.
            if taken < want and taken + len(members) <= want * 1.5 + 1:
                val += members
                taken += len(members)
            else:
                train += members
    return sorted(train, key=lambda s: s.key), sorted(val, key=lambda s: s.key)


def kfold_splits(samples: Sequence[Sample], k: int = 5, seed: int = 0) -> list[tuple[list[Sample], list[Sample]]]:
    """Deterministic stratified, group-aware k-fold splits (for choosing a recipe on small data)."""
    if k < 2:
        raise ValueError("k must be at least 2")
    fold_of: dict[str, int] = {}
    by_label: dict[str, list[str]] = defaultdict(list)
    for s in samples:
        gid = s.group or f"key:{s.key}"
        if gid not in by_label[s.label]:
            by_label[s.label].append(gid)
    for label, gids in by_label.items():
        for i, gid in enumerate(sorted(gids, key=lambda g: _rank(seed, f"{label}/{g}"))):
            fold_of[f"{label}/{gid}"] = i % k
    folds = []
    for f in range(k):
        tr = [s for s in samples if fold_of[f"{s.label}/{s.group or 'key:' + s.key}"] != f]
        va = [s for s in samples if fold_of[f"{s.label}/{s.group or 'key:' + s.key}"] == f]
        folds.append((tr, va))
    return folds
