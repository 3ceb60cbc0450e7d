"""Measuring model files with the engine and deciding whether a new model replaces the one in
use (no tensorflow: the models are tiny ONNX graphs built by ``tests/builders.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from tagteller.datasets import Sample
from tagteller.evaluate.measure import measure_model
from tagteller.install import decide_install, install_model
from tests.builders import colour_model, solid_image

COLOURS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}


@pytest.fixture
def samples(tmp_path):
    out = []
    for label, colour in COLOURS.items():
        for i in range(3):
            shade = tuple(max(0, c - 20 * i) for c in colour)
            out.append(Sample(key=f"{label}/{i}.png", label=label, path=solid_image(tmp_path / f"{label}{i}.png", shade)))
    out.append(Sample(key="red/broken.png", label="red", path=tmp_path / "missing.png"))
    return out


def swapped_model(path, labels=("red", "green", "blue")):
    """Right about red, wrong about green and blue (their labels swapped)."""
    return colour_model(path, domain="colours", labels=(labels[0], labels[2], labels[1]), size=(32, 32))


def test_measure_scans_with_the_engine(tmp_path, samples):
    good = measure_model(colour_model(tmp_path / "good.onnx", domain="colours", size=(32, 32)), samples)
    assert good.accuracy == 1.0 and good.count == 9 and good.macro_f1 == 1.0
    assert [k for k, _ in good.failures] == ["red/broken.png"]
    bad = measure_model(swapped_model(tmp_path / "bad.onnx"), samples)
    assert bad.accuracy == pytest.approx(3 / 9)
    assert bad.per_class_recall == {"red": 1.0, "green": 0.0, "blue": 0.0}
    assert np.array(bad.confusion).sum() == 9
    metrics = bad.as_metrics()
    assert metrics["val_count"] == 9 and set(metrics) >= {"val_accuracy", "macro_f1", "per_class_precision"}


def test_a_label_the_model_lacks_counts_as_a_mistake(tmp_path, samples):
    two = colour_model(tmp_path / "two.onnx", domain="colours", labels=("red", "green"), size=(32, 32))
    measured = measure_model(two, samples)
    assert measured.accuracy == pytest.approx(6 / 9) and measured.per_class_recall["blue"] == 0.0


def test_install_only_when_better(tmp_path, samples):
    good_path = colour_model(tmp_path / "good.onnx", domain="colours", size=(32, 32))
    bad_path = swapped_model(tmp_path / "bad.onnx")
    good, bad = measure_model(good_path, samples), measure_model(bad_path, samples)
    assert decide_install(good, None, samples).install
    assert decide_install(good, tmp_path / "absent.onnx", samples).reason == "no model in use yet"
    better = decide_install(good, bad_path, samples)
    assert better.install and better.reason.startswith("better") and better.current.accuracy == bad.accuracy
    worse = decide_install(bad, good_path, samples)
    assert not worse.install and "not better" in worse.reason
    assert not decide_install(good, good_path, samples).install  # a tie keeps the model in use
    assert decide_install(bad, good_path, samples, force=True).install


def test_changed_labels_or_unreadable_model_in_use_install(tmp_path, samples):
    new = measure_model(colour_model(tmp_path / "new.onnx", domain="colours", size=(32, 32)), samples)
    two = colour_model(tmp_path / "two.onnx", domain="colours", labels=("red", "green"), size=(32, 32))
    assert "labels changed" in decide_install(new, two, samples).reason
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    decision = decide_install(new, junk, samples)
    assert decision.install and "cannot be read" in decision.reason


def test_install_replaces_the_file_whole(tmp_path):
    target = tmp_path / "models" / "colours.onnx"
    first = colour_model(tmp_path / "a.onnx", domain="colours", size=(32, 32))
    install_model(first, target)
    assert target.read_bytes() == first.read_bytes()
    second = swapped_model(tmp_path / "b.onnx")
    install_model(second, target)
    assert target.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["colours.onnx"]  # no temp file left
