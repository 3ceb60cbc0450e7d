"""Dataset layouts and the deterministic, stratified, group-aware split."""

from __future__ import annotations

import numpy as np
import pytest

from tagteller.datasets import (
    CsvManifestLayout,
    FolderLayout,
    IdxLayout,
    Sample,
    SplitFolderLayout,
    kfold_splits,
    read_idx,
    stratified_split,
    write_idx,
)
from tagteller.errors import DatasetError
from tests.builders import solid_image


def _folder(root, counts):
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            solid_image(root / label / f"{i:03d}.png", (i, 0, 0), size=(8, 8))


def test_folder_layout_lists_labels_and_skips_non_images(tmp_path):
    _folder(tmp_path, {"cat": 3, "dog": 2})
    (tmp_path / "dog" / "notes.txt").write_text("hi")
    ds = FolderLayout().load(tmp_path, labels=("dog", "cat"))
    assert ds.labels == ("dog", "cat")
    assert ds.counts() == {"dog": 2, "cat": 3}
    assert ds.skipped == [("dog/notes.txt", "not an image file (by extension)")]


def test_folder_layout_new_labels_come_after_declared(tmp_path):
    _folder(tmp_path, {"cat": 1, "dog": 1, "emu": 1})
    assert FolderLayout().load(tmp_path, labels=("dog", "cat")).labels == ("dog", "cat", "emu")


def test_split_folder_layout_keeps_subsets(tmp_path):
    _folder(tmp_path / "train", {"a": 3, "b": 3})
    _folder(tmp_path / "val", {"a": 1, "b": 1})
    ds = SplitFolderLayout().load(tmp_path)
    train, val = stratified_split(ds.samples, 0.5)
    assert len(train) == 6 and len(val) == 2
    (tmp_path / "val").rename(tmp_path / "validation")
    with pytest.raises(DatasetError, match="missing the 'val/' folder"):
        SplitFolderLayout().load(tmp_path)


def test_idx_roundtrip_and_layout(tmp_path):
    images = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 1, 2, 0], np.uint8))
    assert np.array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), images)
    ds = IdxLayout(class_names=("x", "y", "z")).load(tmp_path)
    assert [s.label for s in ds.samples] == ["x", "y", "y", "z", "x"]
    assert np.array_equal(ds.samples[3].array, images[3])


def test_idx_rejects_truncated_file(tmp_path):
    path = tmp_path / "t.idx"
    write_idx(path, np.zeros((3, 2, 2), np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DatasetError, match="payload"):
        read_idx(path)


def test_csv_manifest_groups_and_refuses_escaping_paths(tmp_path):
    _folder(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "manifest.csv").write_text(
        "path,brand,group\n"
        "a/000.png,a,g1\na/001.png,a,g1\nb/000.png,b,g2\nb/001.png,b,\n"
        "../outside.png,a,g3\n/etc/passwd,a,g4\nb/missing.png,b,g5\na/000.png,../evil,g6\n"
    )
    ds = CsvManifestLayout(label_column="brand", group_column="group").load(tmp_path)
    assert len(ds.samples) == 4
    assert {s.group for s in ds.samples} == {"g1", "g2", None}
    reasons = " | ".join(r for _, r in ds.skipped)
    assert "outside the dataset folder" in reasons and "file not found" in reasons and "path separator" in reasons


def _samples(n_per_label, groups=None):
    out = []
    for label, n in n_per_label.items():
        for i in range(n):
            out.append(Sample(key=f"{label}/{i}", label=label, group=groups(label, i) if groups else None))
    return out


def test_stratified_split_is_deterministic_and_stratified():
    samples = _samples({"a": 50, "b": 20})
    train, val = stratified_split(samples, 0.2, seed=3)
    again_train, again_val = stratified_split(list(reversed(samples)), 0.2, seed=3)
    assert [s.key for s in val] == [s.key for s in again_val]
    assert sum(s.label == "a" for s in val) == 10 and sum(s.label == "b" for s in val) == 4
    assert len(train) + len(val) == 70
    other_val = stratified_split(samples, 0.2, seed=4)[1]
    assert {s.key for s in other_val} != {s.key for s in val}


def test_split_never_separates_a_group():
    samples = _samples({"a": 40, "b": 40}, groups=lambda label, i: f"{label}-g{i // 4}")
    train, val = stratified_split(samples, 0.25, seed=0)
    train_groups = {s.group for s in train}
    assert not train_groups & {s.group for s in val}
    assert 0.15 <= len(val) / len(samples) <= 0.35


def test_kfold_covers_every_sample_once_in_validation():
    samples = _samples({"a": 12, "b": 9}, groups=lambda label, i: f"{label}{i // 3}")
    folds = kfold_splits(samples, k=3, seed=1)
    seen = [s.key for _, val in folds for s in val]
    assert sorted(seen) == sorted(s.key for s in samples)
    for train, val in folds:
        assert not {s.group for s in train} & {s.group for s in val}
