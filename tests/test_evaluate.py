"""``tagteller evaluate`` end to end on a generated dataset with a deliberately confusable pair.

The model (tests/builders.colour_model) scores each image by its mean colour: logits are
0.1 * (R, G, B). Solid-colour PNGs therefore have predictions worked out by hand below:
yellowish images sit between red and green (the confusable pair), a few are mislabelled.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import tagteller
from tagteller import Domain, FolderLayout, Recipe, plugins
from tagteller.datasets import stratified_split
from tagteller.engine import Engine
from tagteller.evaluate.evaluate import evaluate_dataset, keys_sha256
from tagteller.evaluate.report import evaluation_report
from tagteller.modelfile import ModelInfo, embed_metadata, save_model
from tagteller.preprocessing import Preprocessing
from tests.builders import colour_graph, colour_model, solid_image

LABELS = ("red", "green", "blue")
RECIPE = Recipe(val_fraction=0.25, seed=7)

# key -> mean colour. Logits are 0.1 * colour; the comment gives the hand-computed outcome.
IMAGES = {
    **{f"red/r{i}.png": (255, 0, 0) for i in range(1, 5)},   # red, ~100%
    "red/r5.png": (180, 200, 0),   # logits (18, 20, 0): GREEN, p = 1 / (1 + e^-2 + e^-20)
    "red/r6.png": (200, 180, 0),   # logits (20, 18, 0): red, same p
    **{f"green/g{i}.png": (0, 255, 0) for i in range(1, 5)},  # green, ~100%
    "green/g5.png": (200, 190, 0),  # logits (20, 19, 0): RED, p = 1 / (1 + e^-1 + e^-20)
    "green/g6.png": (200, 190, 0),  # the same mistake again
    **{f"blue/b{i}.png": (0, 0, 255) for i in range(1, 4)},   # blue, ~100%
    "blue/b4.png": (0, 30, 25),    # logits (0, 3, 2.5): GREEN, blue second
    "blue/b5.png": (255, 10, 0),   # logits (25.5, 1, 0): RED, ~100%, blue third (a top-2 miss)
}
BROKEN = {"red/empty.png": b"", "blue/broken.png": b"this is not a picture"}


def softmax(logits):
    e = [math.exp(v) for v in logits]
    return [v / sum(e) for v in e]


def confidence_of(key):
    return max(softmax([0.1 * c for c in IMAGES[key]]))


@pytest.fixture(scope="module")
def colours_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours-data")
    for key, colour in IMAGES.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        solid_image(root / key, colour, size=(40, 30))
    for key, data in BROKEN.items():
        (root / key).write_bytes(data)
    (root / "green" / "notes.txt").write_text("not an image")
    model = colour_model(root.parent / "colours.onnx", domain="colours", labels=LABELS, model_version="7")
    return root, model


def use_domain(model_path, recipe=RECIPE):
    domain = Domain(name="colours", description="test colours", labels=LABELS, layout=FolderLayout(),
                    recipe=recipe, model_path=model_path)
    plugin = types.ModuleType("colours_test_plugin")

    @tagteller.hookimpl
    def register_domains(register):
        register(domain)

    plugin.register_domains = register_domains
    plugins.register_plugin(plugin, name="colours-test")
    return domain


def run_cli(*args):
    from tagteller.cli import build_app

    return CliRunner().invoke(build_app(), [str(a) for a in args])


@pytest.fixture(scope="module")
def evaluated(colours_data, tmp_path_factory):
    """One `tagteller evaluate` run over the whole dataset (shared by the checks below)."""
    root, model = colours_data
    out = tmp_path_factory.mktemp("eval-out")
    # module-scoped, so it sets up its own isolated home and plugin state
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAGTELLER_HOME", str(tmp_path_factory.mktemp("home")))
        plugins.reset()
        use_domain(model)
        result = run_cli("evaluate", "--domain", "colours", root, "--out", out, "--top-k", "2", "--json")
        plugins.reset()
    return result, out


def test_exit_code_and_failures_are_reported(evaluated):
    result, out = evaluated
    assert result.exit_code == 1, result.output  # two images failed to decode
    assert "error: blue/broken.png: not a recognised image format" in result.stderr
    assert "error: red/empty.png: empty file (0 bytes)" in result.stderr
    assert "2 of 19 image(s) failed to decode" in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert json.loads(result.stdout) == report
    assert report["counts"] == {"evaluated": 17, "failed": 2, "correct": 12, "skipped_by_layout": 1}
    assert sorted((f["key"], f["reason"]) for f in report["failures"]) == [
        ("blue/broken.png", "not a recognised image format"), ("red/empty.png", "empty file (0 bytes)"),
    ]
    assert report["failure_reasons"] == {"not a recognised image format": 1, "empty file (0 bytes)": 1}
    assert report["dataset"]["skipped_by_layout"] == [{"key": "green/notes.txt",
                                                       "reason": "not an image file (by extension)"}]


def test_numbers_match_the_hand_computation(evaluated):
    _, out = evaluated
    r = json.loads((out / "report.json").read_text())
    # rows true red, green, blue; columns predicted
    assert r["confusion_matrix"]["labels"] == list(LABELS)
    assert r["confusion_matrix"]["counts"] == [[5, 1, 0], [2, 4, 0], [1, 1, 3]]
    assert r["accuracy"] == pytest.approx(12 / 17)
    assert r["top_k"] == 2
    assert r["top_k_accuracy"] == pytest.approx(16 / 17)  # only b5 has its true label third
    expected = {
        "red": (5 / 8, 5 / 6, 6, 8),
        "green": (4 / 6, 4 / 6, 6, 6),
        "blue": (3 / 3, 3 / 5, 5, 3),
    }
    f1 = {}
    for label, (precision, recall, support, predicted) in expected.items():
        row = r["per_class"][label]
        f1[label] = 2 * precision * recall / (precision + recall)
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(f1[label])
        assert (row["support"], row["predicted"]) == (support, predicted)
    assert f1["red"] == pytest.approx(5 / 7) and f1["blue"] == pytest.approx(0.75)
    assert r["macro_avg"]["f1"] == pytest.approx((5 / 7 + 2 / 3 + 3 / 4) / 3)
    assert r["macro_avg"]["precision"] == pytest.approx((5 / 8 + 2 / 3 + 1) / 3)
    assert r["weighted_avg"]["recall"] == pytest.approx(12 / 17)
    assert r["weighted_avg"]["f1"] == pytest.approx((6 * 5 / 7 + 6 * 2 / 3 + 5 * 3 / 4) / 17)
    assert r["weighted_avg"]["precision"] == pytest.approx((6 * 5 / 8 + 6 * 2 / 3 + 5 * 1) / 17)

    # ECE, bin by bin: (0.9, 1]: 12 images (11 right) at ~100%; (0.8, 0.9]: r5 wrong, r6 right;
    # (0.7, 0.8]: g5, g6 wrong; (0.6, 0.7]: b4 wrong.
    sure = [k for k in IMAGES if confidence_of(k) > 0.9]
    assert len(sure) == 12
    c_sure = sum(confidence_of(k) for k in sure) / 12
    c_yellow, c_g5, c_b4 = confidence_of("red/r5.png"), confidence_of("green/g5.png"), confidence_of("blue/b4.png")
    assert (0.8 < c_yellow < 0.9, 0.7 < c_g5 < 0.8, 0.6 < c_b4 < 0.7) == (True, True, True)
    ece = (12 / 17 * abs(11 / 12 - c_sure) + 2 / 17 * abs(1 / 2 - c_yellow)
           + 2 / 17 * abs(0 - c_g5) + 1 / 17 * abs(0 - c_b4))
    assert r["ece"] == pytest.approx(ece, abs=1e-5)
    bins = r["calibration"]["bins"]
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 0, 1, 2, 2, 12]
    assert bins[8]["accuracy"] == 0.5 and bins[8]["confidence"] == pytest.approx(c_yellow, abs=1e-5)

    assert [(p["true"], p["predicted"], p["count"]) for p in r["most_confused"]] == [
        ("green", "red", 2), ("red", "green", 1), ("blue", "red", 1), ("blue", "green", 1),
    ]
    assert r["most_confused"][0]["fraction_of_true"] == pytest.approx(2 / 6)
    worst = r["worst_mistakes"]
    assert [m["key"] for m in worst] == ["blue/b5.png", "red/r5.png", "green/g5.png", "green/g6.png", "blue/b4.png"]
    assert worst[1]["confidence"] == pytest.approx(c_yellow, abs=1e-5)
    assert worst[1]["true_probability"] == pytest.approx(softmax([18, 20, 0])[0], abs=1e-5)


def test_model_and_dataset_provenance(evaluated, colours_data):
    _, out = evaluated
    root, model = colours_data
    r = json.loads((out / "report.json").read_text())
    assert r["model"]["path"] == str(model) and r["model"]["version"] == "7"
    assert r["dataset"]["fingerprint"] == FolderLayout().load(root, LABELS).fingerprint()
    assert r["dataset"]["matches_training_data"] is None  # the model records no training data
    assert r["dataset"]["split"] == "all" and r["dataset"]["samples_selected"] == 19
    assert set(r["files"].values()) <= {p.name for p in out.iterdir()}
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 19
    by_file = {rec["file"]: rec for rec in records}
    assert by_file["red/r5.png"]["label"] == "green" and by_file["red/r5.png"]["true_label"] == "red"
    assert by_file["red/r5.png"]["correct"] is False and by_file["red/r1.png"]["correct"] is True
    assert by_file["red/empty.png"]["status"] == "error" and by_file["red/empty.png"]["correct"] is None


@pytest.mark.parametrize("name", ["confusion.png", "errors.png", "reliability.png"])
def test_each_png_is_a_sensible_image(evaluated, name):
    _, out = evaluated
    with Image.open(out / name) as im:
        assert im.format == "PNG"
        width, height = im.size
        pixels = np.asarray(im.convert("RGB"))
    assert 400 <= width <= 4000 and 250 <= height <= 4000
    assert pixels.std() > 10  # not blank
    packed = (pixels[..., 0].astype(np.uint32) << 16) | (pixels[..., 1].astype(np.uint32) << 8) | pixels[..., 2]
    assert len(np.unique(packed)) > 20


def test_errors_gallery_shows_the_photos(evaluated):
    """The gallery holds the mistaken photos: b5 (red-ish) and b4 (dark teal) colours appear in it."""
    _, out = evaluated
    pixels = np.asarray(Image.open(out / "errors.png").convert("RGB")).reshape(-1, 3).astype(int)
    for colour in ((255, 10, 0), (0, 30, 25), (200, 190, 0)):
        assert (np.abs(pixels - colour).max(axis=1) <= 2).sum() > 500, colour


def test_split_val_uses_exactly_the_validation_keys(colours_data, tmp_path):
    root, model = colours_data
    use_domain(model)
    result = run_cli("evaluate", "--domain", "colours", root, "--split", "val", "--out", tmp_path, "--json")
    assert result.exit_code in (0, 1), result.output
    _, val = stratified_split(FolderLayout().load(root).samples, RECIPE.val_fraction, RECIPE.seed)
    want = {s.key for s in val}
    assert 0 < len(want) < 19
    records = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert {rec["file"] for rec in records} == want and len(records) == len(want)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dataset"]["split"] == "val"
    assert report["dataset"]["samples_selected"] == len(want)
    assert report["dataset"]["selected_keys_sha256"] == keys_sha256(sorted(want))
    assert (report["dataset"]["val_fraction"], report["dataset"]["seed"]) == (0.25, 7)
    assert report["counts"]["evaluated"] + report["counts"]["failed"] == len(want)


def test_split_val_checks_the_models_recorded_validation_keys(colours_data, tmp_path):
    root, _ = colours_data
    _, val = stratified_split(FolderLayout().load(root).samples, RECIPE.val_fraction, RECIPE.seed)
    for name, digest, expected in (("same", keys_sha256([s.key for s in val]), True),
                                   ("other", keys_sha256(["red/r1.png"]), False)):
        graph = colour_graph(LABELS)
        info = ModelInfo(domain="colours", labels=LABELS, height=32, width=32, color_mode="RGB",
                         preprocessing=Preprocessing(),
                         training={"val_keys_sha256": digest, "data_fingerprint": name})
        path = tmp_path / f"{name}.onnx"
        save_model(embed_metadata(graph, info), path)
        domain = Domain(name="colours", description="test", labels=LABELS, recipe=RECIPE)
        evaluation = evaluate_dataset(domain, root, path, split="val", engine=Engine(intra_threads=1))
        assert evaluation_report(evaluation)["dataset"]["matches_training_val_keys"] is expected
        assert evaluation_report(evaluation)["dataset"]["matches_training_data"] is False
        all_images = evaluate_dataset(domain, root, path, split="all", engine=Engine(intra_threads=1))
        assert evaluation_report(all_images)["dataset"]["matches_training_val_keys"] is None


def test_labels_the_model_does_not_know_count_as_mistakes(colours_data, tmp_path):
    root, model = colours_data
    data = tmp_path / "data"
    for key in ("red/r1.png", "red/r2.png", "green/g1.png", "blue/b1.png"):
        (data / key).parent.mkdir(parents=True, exist_ok=True)
        (data / key).write_bytes((root / key).read_bytes())
    (data / "purple").mkdir()
    solid_image(data / "purple" / "p1.png", (140, 0, 100))
    use_domain(model)
    result = run_cli("evaluate", "-d", "colours", data, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    assert "labels the model does not know" in result.stderr
    r = json.loads(result.stdout)
    assert r["dataset"]["labels_not_in_model"] == ["purple"]
    assert r["confusion_matrix"]["labels"] == ["red", "green", "blue", "purple"]
    assert r["confusion_matrix"]["counts"][3] == [1, 0, 0, 0]  # purple (140, 0, 100) is red-ish
    assert r["accuracy"] == pytest.approx(4 / 5)
    assert r["per_class"]["purple"]["recall"] == 0.0 and r["per_class"]["purple"]["support"] == 1


def test_terminal_table_and_default_output_folder(colours_data, tmp_path, monkeypatch):
    root, model = colours_data
    use_domain(model)
    monkeypatch.chdir(tmp_path)
    result = run_cli("evaluate", "-d", "colours", root)
    assert result.exit_code == 1
    assert (tmp_path / "tagteller-eval-colours" / "report.json").is_file()
    assert "70.6%" in result.stdout  # accuracy 12/17
    assert "top-2 accuracy" in result.stdout  # the default k for 3 labels
    assert "94.1%" in result.stdout  # top-2: 16/17
    assert "confused: 2 × green → red" in result.stdout
    for label, f1 in (("red", "0.714"), ("green", "0.667"), ("blue", "0.750")):
        assert any(label in line and f1 in line for line in result.stdout.splitlines()), label


def test_bad_arguments_give_one_line_errors(colours_data, tmp_path):
    root, model = colours_data
    use_domain(model)
    result = run_cli("evaluate", "-d", "colours", tmp_path / "missing", "-o", tmp_path / "o")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "missing" in result.stderr and "does not exist" in result.stderr
    result = run_cli("evaluate", "-d", "colours", root, "--split", "test", "-o", tmp_path / "o")
    assert result.exit_code == 2 and "--split" in result.stderr
    other = colour_model(tmp_path / "other.onnx", domain="other", labels=LABELS)
    result = run_cli("evaluate", "-d", "colours", root, "-m", other, "-o", tmp_path / "o")
    assert result.exit_code == 2 and "for domain 'other'" in result.stderr
    empty = tmp_path / "all-broken" / "red"
    empty.mkdir(parents=True)
    (empty / "x.png").write_bytes(b"junk")
    result = run_cli("evaluate", "-d", "colours", empty.parent, "-o", tmp_path / "o")
    assert result.exit_code == 2 and "none of the 1 selected images could be decoded" in result.stderr
    assert not (tmp_path / "o" / "report.json").exists()


def test_missing_matplotlib_gives_metrics_with_one_note(colours_data, tmp_path, monkeypatch):
    root, model = colours_data
    use_domain(model)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "tagteller.evaluate.plots", raising=False)
    result = run_cli("evaluate", "-d", "colours", root, "-o", tmp_path / "o")
    assert result.exit_code == 1  # two images in the data do not decode
    notes = [line for line in result.stderr.splitlines() if "matplotlib" in line]
    assert notes == ["note: matplotlib is not installed, so no plots: metrics only "
                     "(pip install 'tagteller[report]' draws them)"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["predictions.jsonl", "report.json"]
    assert json.loads((tmp_path / "o" / "report.json").read_text())["files"] == {
        "report": "report.json", "predictions": "predictions.jsonl"}


def test_scan_side_never_imports_matplotlib():
    code = ("import sys; from tagteller.cli import build_app; build_app(); "
            "import tagteller.evaluate.report, tagteller.evaluate.evaluate, tagteller.engine; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_evaluate_and_the_install_measurement_agree_with_sklearn(colours_data):
    """``tagteller evaluate`` and training's install decision measure through one function: the
    same figures on the same images, scikit-learn's macro-F1 (undecodable images left out)."""
    from sklearn.metrics import f1_score

    from tagteller.evaluate.measure import measure_model

    root, model = colours_data
    domain = Domain(name="colours", description="test", labels=LABELS, recipe=RECIPE)
    evaluation = evaluate_dataset(domain, root, model, split="all", engine=Engine(intra_threads=1))
    report = evaluation_report(evaluation)
    measurement = measure_model(model, FolderLayout().load(root, labels=LABELS).samples, Engine(intra_threads=1))
    true = [LABELS.index(key.split("/")[0]) for key in IMAGES]
    predicted = [int(np.argmax(colour)) for colour in IMAGES.values()]  # logits are 0.1 * colour
    assert report["accuracy"] == measurement.accuracy == pytest.approx(np.mean(np.equal(true, predicted)))
    assert report["macro_avg"]["f1"] == measurement.macro_f1 == pytest.approx(f1_score(true, predicted, average="macro"))
    assert report["confusion_matrix"]["counts"] == measurement.confusion
    assert sorted(k for k, _ in measurement.failures) == sorted(BROKEN)
