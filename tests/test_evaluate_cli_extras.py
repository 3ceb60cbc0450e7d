"""``tagteller evaluate --no-plots``, and the warning when the data is the model's training data."""

from __future__ import annotations

import json

from tagteller.datasets import FolderLayout
from tagteller.modelfile import ModelInfo, embed_metadata, save_model
from tagteller.preprocessing import Preprocessing
from tests.builders import colour_graph
from tests.test_evaluate import LABELS, RECIPE, colours_data, run_cli, use_domain  # noqa: F401 - fixture


def model_trained_on(path, data_fingerprint, val_keys_sha256=None):
    """A colour model whose metadata says it was trained on data with this fingerprint."""
    model = colour_graph(LABELS, (32, 32), 3)
    training = {"data_fingerprint": data_fingerprint}
    if val_keys_sha256:
        training["val_keys_sha256"] = val_keys_sha256
    info = ModelInfo(domain="colours", labels=LABELS, height=32, width=32, color_mode="RGB",
                     preprocessing=Preprocessing(), output="probabilities", metrics={"val_accuracy": 1.0},
                     model_version="9", training=training)
    embed_metadata(model, info)
    save_model(model, path)
    return path


def test_no_plots_writes_metrics_only(colours_data, tmp_path):
    root, model = colours_data
    use_domain(model)
    result = run_cli("evaluate", "-d", "colours", root, "-o", tmp_path / "o", "--no-plots", "--json")
    assert result.exit_code == 1, result.output  # two broken images in the data
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["predictions.jsonl", "report.json"]
    assert json.loads(result.stdout)["counts"]["evaluated"] == 17
    assert "matplotlib" not in result.stderr


def test_warns_when_the_data_is_the_training_data(colours_data, tmp_path):
    root, _ = colours_data
    from tagteller.evaluate.evaluate import keys_sha256, select_samples

    dataset = FolderLayout().load(root, labels=LABELS)
    val = select_samples(dataset, "val", RECIPE)
    model = model_trained_on(tmp_path / "m.onnx", dataset.fingerprint(), keys_sha256([s.key for s in val]))
    use_domain(model)
    result = run_cli("evaluate", "-d", "colours", root, "-o", tmp_path / "o", "--no-plots")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    trained = len(dataset.samples) - len(val)
    assert f"{trained} of the {len(dataset.samples)} images were training images" in warnings[0]
    assert "--split val" in warnings[0]
    # its own validation images: no warning
    result = run_cli("evaluate", "-d", "colours", root, "-o", tmp_path / "v", "--no-plots", "--split", "val")
    assert "warning:" not in result.stderr, result.stderr


def test_no_warning_for_other_data(colours_data, tmp_path):
    root, _ = colours_data
    use_domain(model_trained_on(tmp_path / "m.onnx", "0" * 64))
    result = run_cli("evaluate", "-d", "colours", root, "-o", tmp_path / "o", "--no-plots")
    assert "warning:" not in result.stderr, result.stderr
