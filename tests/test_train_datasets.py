"""Datasets the training tests generate, the decode/augment pipeline, and ``tagteller data check``.

The builders here (coloured-shape photos in a folder layout, an idx layout and a CSV manifest,
and a test domain plugin) are shared by the other ``test_train_*`` modules.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from tests.builders import DomainsPlugin
from tagteller import CsvManifestLayout, Domain, FolderLayout, IdxLayout, Phase, Recipe, TargetPlateauPolicy
from tagteller import plugins
from tagteller.datasets import stratified_split, write_idx

LABELS = ("red", "green", "blue")
TINTS = {"red": (205, 55, 50), "green": (50, 185, 70), "blue": (45, 75, 210)}


def colour_photo(label: str, rng: np.random.Generator, size: int = 40) -> Image.Image:
    """A photo whose background is tinted by its label, with a random shape of any colour on it."""
    grey = rng.integers(80, 180)
    tint = np.array(TINTS[label])
    background = tuple(int(v) for v in np.clip(0.6 * tint + 0.4 * grey + rng.integers(-20, 20, 3), 0, 255))
    im = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(im)
    x, y = (int(v) for v in rng.integers(0, size // 2, 2))
    side = int(rng.integers(size // 5, size // 2))
    colour = tuple(int(v) for v in rng.integers(0, 255, 3))
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x, y, x + side, y + side], fill=colour)
    noise = rng.integers(-12, 12, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(im, dtype=np.int16) + noise, 0, 255).astype(np.uint8))


def make_folder_dataset(root: Path, per_class: int = 24, seed: int = 0, size: int = 40,
                        problems: bool = False) -> Path:
    """``root/<label>/<i>.png``; with ``problems``: a text file, a broken JPEG, two duplicates
    (one under another label) and an image outside any label folder."""
    rng = np.random.default_rng(seed)
    for label in LABELS:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            colour_photo(label, rng, size).save(root / label / f"{i:03d}.png")
    if problems:
        (root / "red" / "notes.txt").write_text("not an image")
        (root / "green" / "broken.jpg").write_bytes(b"this is not an image at all")
        shutil.copy(root / "red" / "000.png", root / "red" / "copy-of-000.png")
        shutil.copy(root / "blue" / "001.png", root / "green" / "blue-001-mislabelled.png")
        colour_photo("red", rng, size).save(root / "stray.png")
    return root


IDX_LABELS = ("dark", "light", "striped")


def make_idx_dataset(root: Path, per_class: int = 20, seed: int = 0) -> Path:
    """MNIST-style gzipped idx files of 28x28 grey images: dark, light or striped squares."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for n, _label in enumerate(IDX_LABELS):
        for _ in range(per_class):
            im = np.zeros((28, 28), np.float64)
            x, y = rng.integers(2, 10, 2)
            patch = {0: 90.0, 1: 240.0}.get(n, 0.0)
            im[y:y + 16, x:x + 16] = patch if n < 2 else np.tile([240.0, 0.0], 8)[None, :]
            images.append(np.clip(im + rng.normal(0, 10, im.shape), 0, 255).astype(np.uint8))
            labels.append(n)
    order = rng.permutation(len(labels))
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte.gz", np.stack(images)[order])
    write_idx(root / "train-labels-idx1-ubyte.gz", np.array(labels, np.uint8)[order])
    return root


def make_csv_dataset(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """``root/manifest.csv`` (path, label, group; two photos per group) and ``root/img/*.png``."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for label in LABELS:
        for i in range(per_class):
            name = f"img/{label}-{i}.png"
            colour_photo(label, rng).save(root / name)
            rows.append({"path": name, "label": label, "group": f"{label}-{i // 2}"})
    rows.append({"path": "img/missing.png", "label": "red", "group": "x"})
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "group"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def tiny_recipe(**changes) -> Recipe:
    """A CNN small enough to train in well under a second an epoch."""
    recipe = Recipe(
        backbone="cnn", backbone_options={"filters": (8, 16), "convs_per_block": 1}, weights=None,
        input_size=(32, 32), dropout=0.1, batch_size=16,
        augmentation={"flip": True, "rotation": 0.0, "zoom": 0.0, "contrast": 0.0, "erasing": 0.0},
        phases=(Phase("scratch", unfreeze="all", learning_rate=1e-2, epochs=8),),
        val_fraction=0.25, seed=7,
    )
    return recipe.with_(**changes) if changes else recipe


def colours_domain(name: str = "colours", recipe: Recipe | None = None, layout=None, labels=LABELS,
                   stopping=None) -> Domain:
    return Domain(name=name, description="test colours", labels=labels, layout=layout or FolderLayout(),
                  recipe=recipe or tiny_recipe(),
                  stopping=stopping or TargetPlateauPolicy(target_accuracy=None, patience=3, max_epochs=8))


DomainPlugin = DomainsPlugin


def register(*domains: Domain) -> None:
    plugins.register_plugin(DomainPlugin(*domains), name="test-train-domains")


# -- data check (no tensorflow) ---------------------------------------------------------------

def test_data_check_reports_counts_duplicates_and_unreadable_files(tmp_path):
    from tagteller.datacheck import check_dataset, report_lines

    root = make_folder_dataset(tmp_path / "data", per_class=6, problems=True)
    report = check_dataset(colours_domain(), root)
    assert report.counts == {"red": 7, "green": 8, "blue": 6}
    assert sum(report.train_counts.values()) + sum(report.val_counts.values()) == 21
    assert report.imbalance == pytest.approx(8 / 6)
    assert ["red/000.png", "red/copy-of-000.png"] in report.duplicates
    assert report.conflicting == [["blue/001.png", "green/blue-001-mislabelled.png"]]
    assert [k for k, _ in report.unreadable] == ["green/broken.jpg"]
    assert "not a recognised image format" in report.unreadable[0][1]
    assert {k for k, _ in report.skipped} == {"red/notes.txt", "stray.png"}
    assert not report.ok
    text = "\n".join(report_lines(report))
    assert "under different labels" in text and "green/broken.jpg" in text


def test_data_check_command(tmp_path):
    from tagteller.cli import build_app

    register(colours_domain())
    clean = make_folder_dataset(tmp_path / "clean", per_class=4)
    runner = CliRunner()
    result = runner.invoke(build_app(), ["data", "check", "--domain", "colours", str(clean)])
    assert result.exit_code == 0, result.output
    assert "12 images, 3 labels" in result.output
    broken = make_folder_dataset(tmp_path / "broken", per_class=4, problems=True)
    result = runner.invoke(build_app(), ["data", "check", "--domain", "colours", "--json", str(broken)])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["unreadable"][0]["file"] == "green/broken.jpg"
    assert report["counts"]["green"] == 6


def test_data_check_idx_finds_duplicate_arrays(tmp_path):
    from tagteller.datacheck import check_dataset

    root = make_idx_dataset(tmp_path / "idx", per_class=5)
    images_path = root / "train-images-idx3-ubyte.gz"
    from tagteller.datasets import read_idx

    images = read_idx(images_path).copy()
    images[1] = images[0]
    write_idx(images_path, images)
    domain = colours_domain(layout=IdxLayout(class_names=IDX_LABELS), labels=IDX_LABELS)
    report = check_dataset(domain, root)
    assert report.total == 15 and report.ok
    assert ["train:0", "train:1"] in report.duplicates


def test_class_weights_only_when_imbalanced():
    from tagteller.train.pipeline import class_weights

    assert class_weights(np.array([0, 0, 1, 1, 2, 2]), 3, "auto") is None
    weights = class_weights(np.array([0] * 8 + [1] * 2 + [2] * 2), 3, "auto")
    assert weights == pytest.approx({0: 0.5, 1: 2.0, 2: 2.0})
    assert class_weights(np.array([0] * 8 + [1] * 2), 2, "none") is None


def test_csv_split_keeps_groups_together(tmp_path):
    root = make_csv_dataset(tmp_path / "csv", per_class=8)
    dataset = CsvManifestLayout(group_column="group").load(root, LABELS)
    assert dataset.skipped and "missing.png" in dataset.skipped[0][1]
    train, val = stratified_split(dataset.samples, 0.25, 7)
    assert {s.group for s in train}.isdisjoint({s.group for s in val})


# -- decoding and augmentation ----------------------------------------------------------------

def test_decode_uses_the_engines_pixels_and_skips_unreadable(tmp_path):
    from tagteller.imaging import prepare
    from tagteller.sample_decoding import decode_samples

    root = make_folder_dataset(tmp_path / "data", per_class=3, problems=True)
    dataset = FolderLayout().load(root, LABELS)
    recipe = tiny_recipe()
    decoded = decode_samples(dataset.samples, dataset.label_index(), recipe.input_size, recipe.preprocessing, workers=2)
    assert decoded.failures == [("green/broken.jpg", "not a recognised image format")]
    assert len(decoded) == len(dataset.samples) - 1 and decoded.images.dtype == np.uint8
    sample = next(s for s in dataset.samples if s.key == "blue/002.png")
    i = decoded.keys.index("blue/002.png")
    np.testing.assert_array_equal(decoded.images[i], prepare(sample.path, (32, 32), recipe.preprocessing))
    assert decoded.labels[i] == LABELS.index("blue")


def test_training_batches_are_augmented_pixels_with_one_hot_labels(tmp_path):
    from tagteller.sample_decoding import DecodedImages
    from tagteller.train.pipeline import evaluation_dataset, training_dataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (20, 16, 16, 3), dtype=np.uint8)
    decoded = DecodedImages(images, np.arange(20, dtype=np.int32) % 2, [str(i) for i in range(20)])
    augmentation = {"flip": True, "rotation": 0.1, "zoom": 0.1, "contrast": 0.2, "erasing": 0.5}
    ds = training_dataset(decoded, 2, 8, augmentation, seed=1)
    first = [(x.numpy(), y.numpy()) for x, y in ds]
    second = [(x.numpy(), y.numpy()) for x, y in ds]
    assert [len(x) for x, _ in first] == [8, 8, 4]
    x, y = first[0]
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 255
    assert y.shape == (8, 2) and set(y.sum(axis=1)) == {1.0}
    assert not np.array_equal(first[0][0], second[0][0])  # reshuffled and re-augmented each epoch
    plain = next(iter(evaluation_dataset(decoded, 2, 20)))[0].numpy()
    np.testing.assert_array_equal(plain, images.astype(np.float32))  # validation: untouched


def test_random_erasing_fills_a_rectangle_with_the_image_mean():
    import tensorflow as tf

    from tagteller.train.pipeline import random_erasing

    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (6, 20, 20, 3)).astype(np.float32)
    erased = random_erasing(tf.constant(images), 1.0).numpy()
    for before, after in zip(images, erased):
        changed = np.any(before != after, axis=-1)
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        assert changed.sum() == len(rows) * len(cols) > 0  # exactly one filled rectangle
        np.testing.assert_allclose(after[changed], np.broadcast_to(before.mean(axis=(0, 1)), (changed.sum(), 3)),
                                   rtol=1e-5)
    np.testing.assert_array_equal(random_erasing(tf.constant(images), 0.0).numpy(), images)


def test_prepare_data_keeps_a_given_split_and_skips_foreign_labels(tmp_path):
    from tagteller import SplitFolderLayout
    from tagteller.feedback import file_path
    from tagteller.train.trainer import prepare_data

    root = tmp_path / "split"
    for side, n in (("train", 5), ("val", 2), ("test", 3)):
        make_folder_dataset(root / side, per_class=n, seed=n)
    (root / "train" / "purple").mkdir()
    colour_photo("red", np.random.default_rng(9)).save(root / "train" / "purple" / "x.png")
    domain = colours_domain(layout=SplitFolderLayout())
    file_path(domain, root / "val" / "red" / "000.png", "green")  # a correction filed by a user
    lines: list[str] = []
    data = prepare_data(domain, root, domain.recipe, use_feedback=True, log=lines.append)
    assert data.labels == LABELS
    assert len(data.val) == 6 and all(s.subset == "val" for s in data.val)
    assert len(data.train) == 15 + 1 and data.feedback_count == 1
    assert data.train[-1].key.startswith("feedback/green/")
    assert any("labelled purple skipped" in line for line in lines)
    assert ("train/purple/x.png", "label 'purple' is not one of the domain's") in data.skipped
    without = prepare_data(domain, root, domain.recipe, use_feedback=False, log=lines.append)
    assert without.feedback_count == 0 and without.fingerprint != data.fingerprint
    assert without.val_keys_sha256 == data.val_keys_sha256


def test_one_warp_flips_turns_and_zooms_about_the_centre():
    import tensorflow as tf

    from tagteller.train.pipeline import warp_matrices

    rng = np.random.default_rng(2)
    images = rng.uniform(0, 255, (3, 9, 9, 2)).astype(np.float32)

    def warp(flip, angle, scale):
        n = len(images)
        matrices = warp_matrices(tf.constant([flip] * n), tf.constant([angle] * n, tf.float32),
                                 tf.constant([scale] * n, tf.float32), 9, 9)
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=tf.constant(images), transforms=matrices, output_shape=[9, 9], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="NEAREST").numpy()

    np.testing.assert_allclose(warp(False, 0.0, 1.0), images, atol=1e-4)
    np.testing.assert_allclose(warp(True, 0.0, 1.0), images[:, :, ::-1], atol=1e-4)
    np.testing.assert_allclose(warp(False, np.pi / 2, 1.0), np.rot90(images, 1, axes=(1, 2)), atol=1e-3)
    turned_then_mirrored = np.rot90(images, 1, axes=(1, 2))[:, :, ::-1]
    np.testing.assert_allclose(warp(True, np.pi / 2, 1.0), turned_then_mirrored, atol=1e-3)
    zoomed_out = warp(False, 0.0, 2.0)  # each output pixel reads twice as far from the centre
    np.testing.assert_allclose(zoomed_out[:, 4, 4], images[:, 4, 4], atol=1e-4)
    np.testing.assert_allclose(zoomed_out[:, 3, 5], images[:, 2, 6], atol=1e-4)


@pytest.mark.parametrize("augmentation", [
    {"flip": True},
    {"flip": True, "rotation": 0.05, "zoom": 0.1},
    {"contrast": 0.3},
])
def test_augmenter_keeps_shape_and_range_and_changes_images(augmentation):
    import tensorflow as tf

    from tagteller.train.pipeline import build_augmenter

    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, (16, 12, 12, 3)).astype(np.float32)
    out = build_augmenter(augmentation, seed=4)(tf.constant(images)).numpy()
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 255
    changed = [not np.allclose(a, b) for a, b in zip(images, out)]
    assert 0 < sum(changed)
    if augmentation == {"flip": True}:  # a flip alone is an exact mirror or nothing
        for a, b in zip(images, out):
            assert np.array_equal(a, b) or np.array_equal(a[:, ::-1], b)
    assert build_augmenter({"flip": False, "rotation": 0.0}) is None
