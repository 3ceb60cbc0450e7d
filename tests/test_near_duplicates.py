"""Near-duplicate grouping (FolderLayout(near_duplicates=N)): a photo and its re-encoded, resized
copy land on one side of the split; different photos, other classes and bad files do not group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tagteller.datasets import FolderLayout, Sample, stratified_split
from tagteller.near_duplicates import difference_hash, group_near_duplicates


def _photo(seed: int, size: int = 96) -> Image.Image:
    """A smooth random picture (blocks of colour, upsampled): dHash sees its layout."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def _dataset(root: Path) -> dict[str, Path]:
    """Two classes; in 'a', photo 0 also appears as a smaller JPEG re-encode (its near-twin)."""
    paths = {}
    for label, seeds in (("a", range(0, 6)), ("b", range(10, 16))):
        (root / label).mkdir(parents=True)
        for seed in seeds:
            path = root / label / f"p{seed}.png"
            _photo(seed).save(path)
            paths[f"{label}/p{seed}.png"] = path
    twin = root / "a" / "p0-copy.jpg"
    _photo(0).resize((70, 70)).save(twin, quality=60)
    paths["a/p0-copy.jpg"] = twin
    # the same picture filed under the other class: never grouped across labels
    _photo(0).save(root / "b" / "p0-elsewhere.png")
    (root / "a" / "broken.png").write_bytes(b"not a png")
    return paths


def test_a_re_encoded_copy_is_grouped_with_its_original(tmp_path):
    _dataset(tmp_path)
    data = FolderLayout(near_duplicates=26).load(tmp_path)
    groups = {s.key: s.group for s in data.samples}
    assert groups["a/p0.png"] is not None
    assert groups["a/p0.png"] == groups["a/p0-copy.jpg"]
    assert groups["b/p0-elsewhere.png"] is None  # same picture, other class: not linked
    assert groups["a/broken.png"] is None  # undecodable: left alone (training reports it)
    assert sum(g is not None for g in groups.values()) == 2
    assert all(s.group is None for s in FolderLayout().load(tmp_path).samples)


def test_the_split_keeps_near_twins_on_one_side(tmp_path):
    _dataset(tmp_path)
    data = FolderLayout(near_duplicates=26).load(tmp_path)
    for seed in range(20):
        train, val = stratified_split(list(data.samples), 0.3, seed)
        sides = {("train" if s in train else "val") for s in data.samples if s.key.startswith("a/p0")}
        assert len(sides) == 1, seed


def test_grouping_is_transitive_and_keeps_a_manifest_group():
    base = np.asarray(_photo(3), dtype=np.int16)
    step = np.zeros_like(base)
    step[:, :48] = 40  # brighten the left half: a few hash bits flip at each step
    chain = [np.clip(base + k * step, 0, 255).astype(np.uint8) for k in range(3)]
    hashes = [difference_hash(Sample(key=str(k), label="a", array=c)) for k, c in enumerate(chain)]
    d01, d12, d02 = (int((hashes[i] != hashes[j]).sum()) for i, j in ((0, 1), (1, 2), (0, 2)))
    limit = max(d01, d12)
    samples = [Sample(key=str(k), label="a", array=c) for k, c in enumerate(chain)]
    samples.append(Sample(key="m", label="a", array=chain[0], group="shelf-7"))
    assert d02 > limit  # 0 and 2 are too far apart to be linked directly: only through 1
    grouped = group_near_duplicates(samples, limit)
    assert grouped[0].group == grouped[1].group == grouped[2].group == "near:0"
    assert grouped[3].group == "shelf-7"
    assert all(s.group is None for s in group_near_duplicates(samples[:3:2], limit))  # 0 and 2 alone


def test_distinct_photos_stay_apart_and_bad_arguments_are_refused():
    samples = [Sample(key=str(s), label="a", array=np.asarray(_photo(s))) for s in range(8)]
    assert all(s.group is None for s in group_near_duplicates(samples, 26))
    with pytest.raises(ValueError):
        group_near_duplicates(samples, -1)
