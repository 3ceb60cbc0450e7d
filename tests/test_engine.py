"""The shared onnxruntime engine: metadata, batching, ordering, per-file errors, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tagteller.engine import Engine, softmax, top_predictions
from tagteller.errors import ModelError
from tagteller.imaging import prepare
from tagteller.preprocessing import Preprocessing
from tests.builders import colour_model, solid_image


@pytest.fixture
def engine():
    eng = Engine(intra_threads=1, decode_workers=2)
    yield eng
    eng.close()


@pytest.fixture
def model_path(tmp_path):
    return colour_model(tmp_path / "colours.onnx")


def test_load_reads_metadata_and_caches_session(engine, model_path):
    first = engine.load(model_path)
    assert first.info.domain == "colours"
    assert first.info.labels == ("red", "green", "blue")
    assert first.info.input_size == (32, 32)
    assert engine.load(model_path) is first


def test_reload_after_file_changes(engine, model_path, tmp_path):
    first = engine.load(model_path)
    colour_model(model_path, model_version="2")
    second = engine.load(model_path)
    assert second is not first and second.info.model_version == "2"


def test_scan_keeps_input_order_across_batches_and_errors(engine, model_path, tmp_path):
    colours = {"red": (250, 0, 0), "green": (0, 250, 0), "blue": (0, 0, 250)}
    sources, expected = [], []
    for i in range(23):
        name = ("red", "green", "blue")[i % 3]
        if i % 7 == 3:
            bad = tmp_path / f"{i:02d}-bad.jpg"
            bad.write_bytes(b"not an image at all")
            sources.append(bad)
            expected.append(None)
        else:
            sources.append(solid_image(tmp_path / f"{i:02d}-{name}.png", colours[name]))
            expected.append(name)
    results = list(engine.scan(engine.load(model_path), sources, top_k=2, batch_size=4))
    assert [r.index for r in results] == list(range(23))
    for result, want in zip(results, expected):
        if want is None:
            assert not result.ok and "not a recognised image format" in result.error
        else:
            assert result.ok and result.top.label == want
            assert len(result.predictions) == 2
            assert result.predictions[0].probability >= result.predictions[1].probability


def test_scan_accepts_arrays_bytes_and_pil(engine, model_path, tmp_path):
    png = solid_image(tmp_path / "b.png", (0, 0, 255)).read_bytes()
    arr = np.zeros((10, 10, 3), np.uint8)
    arr[..., 1] = 200
    results = list(engine.scan(engine.load(model_path), [arr, png, Image.new("RGB", (5, 5), (255, 0, 0))]))
    assert [r.top.label for r in results] == ["green", "blue", "red"]


def test_logits_models_get_softmax(engine, tmp_path):
    path = colour_model(tmp_path / "logits.onnx", output="logits")
    result = engine.classify(engine.load(path), solid_image(tmp_path / "g.png", (0, 255, 0)), top_k=3)
    probs = [p.probability for p in result.predictions]
    assert result.top.label == "green"
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)


def test_label_count_mismatch_is_a_model_error(engine, tmp_path):
    path = colour_model(tmp_path / "bad.onnx", labels=("a", "b", "c"), out_classes=4)
    with pytest.raises(ModelError, match="3 labels in metadata but the model outputs 4"):
        engine.load(path)


def test_missing_model_is_a_model_error(engine, tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        engine.load(tmp_path / "nope.onnx")


def test_softmax_and_top_predictions():
    probs = softmax(np.array([[1.0, 3.0, 2.0]]))[0]
    assert probs.sum() == pytest.approx(1.0)
    top = top_predictions(probs, ("a", "b", "c"), 2)
    assert [p.label for p in top] == ["b", "c"]
    assert len(top_predictions(probs, ("a", "b", "c"), 10)) == 3


def test_exif_orientation_is_honoured(tmp_path):
    # Stored pixels: left half red, right half blue; EXIF says rotate 90 degrees clockwise to view
    # (orientation 6), so the viewer shows red on top, blue at the bottom.
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif, quality=95)
    arr = prepare(path, (20, 20), Preprocessing())
    assert arr.shape == (20, 20, 3)
    top, bottom = arr[2, 10], arr[-3, 10]
    assert top[0] > 200 and top[2] < 60  # red on top
    assert bottom[2] > 200 and bottom[0] < 60  # blue at the bottom


def test_jpeg_draft_keeps_colour_and_size(tmp_path):
    path = solid_image(tmp_path / "big.jpg", (10, 200, 30), size=(2000, 1500), quality=90)
    arr = prepare(path, (64, 64), Preprocessing())
    assert arr.shape == (64, 64, 3)
    assert np.allclose(arr.mean(axis=(0, 1)), (10, 200, 30), atol=6)


def test_apparel_style_preprocessing_inverts_trims_and_pads(tmp_path):
    # A dark, tall object on a white background: inverted to light-on-dark, trimmed, padded.
    im = Image.new("RGB", (300, 300), (255, 255, 255))
    im.paste((30, 30, 30), (120, 50, 180, 250))  # 60 wide, 200 tall
    path = tmp_path / "shirt.png"
    im.save(path)
    pre = Preprocessing(color_mode="L", invert="auto", trim=True, resize="pad")
    arr = prepare(path, (28, 28), pre)[:, :, 0]
    assert arr.shape == (28, 28)
    assert arr[0, 0] < 20 and arr[:, 0].max() < 20  # dark background after inversion and padding
    assert arr[14, 14] > 200  # the object is light
    rows = np.flatnonzero(arr.max(axis=1) > 128)
    assert rows[0] <= 2 and rows[-1] >= 25  # trimmed: the object fills the height
