"""Training a tiny CNN on generated photos, end to end: run history, checkpoint, ONNX export,
parity, metadata, the engine, resuming, installing only when better, and the commands.

One module-scoped run (:func:`trained`) is shared by the tests that only read its results.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from tagteller import CsvManifestLayout, FolderLayout, IdxLayout, Preprocessing
from tagteller.datasets import stratified_split
from tagteller.engine import Engine
from tagteller.paths import installed_model_path
from tests.builders import colour_model
from tests.test_train_datasets import (
    IDX_LABELS,
    LABELS,
    colours_domain,
    make_csv_dataset,
    make_folder_dataset,
    make_idx_dataset,
    register,
    tiny_recipe,
)

pytestmark = pytest.mark.train

CONTRACT_KEYS = {"domain", "run_id", "recipe", "stopping", "labels", "data_fingerprint", "val_keys_sha256",
                 "phases", "epochs", "decisions", "best", "status", "wall_time_s"}
EPOCH_KEYS = {"epoch", "phase", "phase_name", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "elapsed_s"}


@dataclass
class Trained:
    home: Path
    data: Path
    result: object
    logs: list[str]

    @property
    def run_dir(self) -> Path:
        return self.result.run_dir

    def history(self) -> dict:
        return json.loads((self.run_dir / "history.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def val_samples(data: Path):
    dataset = FolderLayout().load(data, LABELS)
    recipe = tiny_recipe()
    return dataset, stratified_split(dataset.samples, recipe.val_fraction, recipe.seed)[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    from tagteller.train.trainer import TrainOptions, train_domain

    base = tmp_path_factory.mktemp("trained")
    data = make_folder_dataset(base / "data", per_class=24, problems=True)
    home = base / "home"
    logs: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAGTELLER_HOME", str(home))
        result = train_domain(colours_domain(), TrainOptions(data=data, epochs=4, command_line="tagteller train test"),
                              log=logs.append)
    return Trained(home, data, result, logs)


def test_the_run_installs_a_model_and_reports_what_it_skipped(trained):
    result = trained.result
    assert result.outcome == "installed" and result.exit_code == 0
    assert result.installed_path == trained.home / "data" / "models" / "colours.onnx"
    text = "\n".join(trained.logs)
    assert "stray.png: image outside any <label>/ folder" in text
    assert "red/notes.txt: not an image file" in text
    assert "green/broken.jpg: not a recognised image format; skipped (unreadable)" in text
    assert "stopped after 4 epoch(s): --epochs 4 reached" in text


def test_history_follows_the_run_history_contract(trained):
    from tagteller.evaluate.evaluate import keys_sha256
    from tagteller.evaluate.report import training_summary
    from tagteller.runs import load_history

    history = trained.history()
    assert CONTRACT_KEYS <= set(history)
    assert history["status"] == "finished" and history["domain"] == "colours"
    assert history["labels"] == list(LABELS)
    epochs = history["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert all(set(e) >= EPOCH_KEYS and e["phase"] == 0 and e["phase_name"] == "scratch" for e in epochs)
    assert [e["elapsed_s"] for e in epochs] == sorted(e["elapsed_s"] for e in epochs)
    assert history["phases"] == [{"index": 0, "name": "scratch", "unfreeze": "all", "learning_rate": 0.01,
                                  "first_epoch": 1}]
    best = max(e["val_accuracy"] for e in epochs)
    assert history["best"]["val_accuracy"] == best
    assert epochs[history["best"]["epoch"] - 1]["val_accuracy"] == best
    assert history["decisions"] == [{"epoch": 4, "action": "stop", "reason": "--epochs 4 reached", "by": "policy"}]
    assert history["counts"]["unreadable"] == 1 and history["counts"]["skipped"] == 2
    dataset, val = val_samples(trained.data)
    assert history["data_fingerprint"] == dataset.fingerprint()
    assert history["val_keys_sha256"] == keys_sha256([s.key for s in val])
    runs = trained.home / "data" / "runs" / "colours"
    assert (runs / "latest").read_text().strip() == history["run_id"] == trained.run_dir.name
    assert list((trained.run_dir / "tensorboard" / "validation").glob("events.out.tfevents.*"))
    # the reader of `tagteller report` accepts it
    assert training_summary(load_history(trained.run_dir))["best"]["val_accuracy"] == best


def test_the_run_records_its_settings_and_where_each_came_from(trained):
    recorded = {"epochs": {"value": 4, "from": "command line"}, "time_budget_s": {"value": None, "from": "default"},
                "batch_size": {"value": 16, "from": "domain"}, "weights": {"value": None, "from": "domain"},
                "seed": {"value": 7, "from": "domain"}, "stopping": {"value": "target-plateau", "from": "domain"}}
    assert trained.history()["settings"] == recorded
    assert Engine(intra_threads=1).load(trained.result.installed_path).info.training["settings"] == recorded
    assert trained.logs[0] == ("settings: epochs 4 (command line), time budget none (default), batch size 16 (domain), "
                               "weights none (domain), seed 7 (domain), stopping target-plateau (domain)")


def test_each_model_file_is_written_once(trained, monkeypatch):
    from tagteller.train import export
    from tagteller.train.trainer import TrainOptions, train_domain

    written: list[Path] = []
    save = export.save_model
    monkeypatch.setattr(export, "save_model", lambda proto, path: (written.append(Path(path)), save(proto, path)))
    result = train_domain(colours_domain(), TrainOptions(data=trained.data, epochs=1, fresh=True, quantize="fp16"),
                          log=lambda _: None)
    smaller = result.run_dir / "model-fp16.onnx"
    assert sorted(written) == sorted([result.run_dir / "model.onnx"] + ([smaller] if smaller.is_file() else []))
    metrics = Engine(intra_threads=1).load(result.run_dir / "model.onnx").info.metrics  # written complete
    assert metrics["parity"]["passed"] and metrics["fp16"]["size_bytes"] > 0 and "val_accuracy" in metrics


def test_checkpoint_and_onnx_agree(trained):
    import onnxruntime as ort

    from tagteller.imaging import prepare
    from tagteller.train.model import load_checkpoint, predict_probabilities

    metrics = json.loads((trained.run_dir / "metrics.json").read_text())
    assert metrics["parity"]["passed"] and metrics["parity"]["max_abs_diff"] < 1e-4
    model = load_checkpoint(trained.run_dir / "best.keras")
    _, val = val_samples(trained.data)
    images = np.stack([prepare(s.path, (32, 32), Preprocessing()) for s in val if s.key != "green/broken.jpg"])
    session = ort.InferenceSession(str(trained.run_dir / "model.onnx"))
    onnx_probs = session.run(None, {session.get_inputs()[0].name: images})[0]
    keras_probs = predict_probabilities(model, images)
    # The exported graph divides the logits by the fitted temperature: softmax(log(p) / T).
    temperature = Engine(intra_threads=1).load(trained.run_dir / "model.onnx").info.calibration["temperature"]
    logits = np.log(np.clip(keras_probs.astype(np.float64), 1e-30, None)) / temperature
    calibrated = np.exp(logits - logits.max(axis=1, keepdims=True))
    calibrated /= calibrated.sum(axis=1, keepdims=True)
    assert np.abs(onnx_probs - calibrated).max() < 1e-4
    assert (onnx_probs.argmax(1) == keras_probs.argmax(1)).all()
    np.testing.assert_allclose(onnx_probs.sum(axis=1), 1.0, atol=1e-5)  # softmax is in the graph


def test_every_trained_model_is_calibrated_and_knows_unknown(trained, tmp_path):
    from tagteller.openset import synthetic_unknowns

    loaded = Engine(intra_threads=1).load(trained.result.installed_path)
    info = loaded.info
    assert info.calibration["temperature"] > 0
    assert info.calibration["ece_after_in_sample"] <= info.calibration["ece_before"] + 1e-9
    assert info.open_set["output"] == "ood_score" and info.open_set["val_false_rejection"] <= 0.05
    session = ort.InferenceSession(str(trained.result.installed_path))
    assert [o.name for o in session.get_outputs()] == ["probabilities", "ood_score", "embedding"]
    _, val = val_samples(trained.data)
    readable = [s.path for s in val if s.key != "green/broken.jpg"]
    results = list(Engine(intra_threads=1).scan(loaded, readable, top_k=1))
    assert np.mean([r.status == "unknown" for r in results]) <= 0.05
    noise, _ = synthetic_unknowns(10, 32, 32, 3, seed=99)
    scores = session.run(["ood_score"], {"image": noise[::5]})[0]  # uniform noise: kinds 0 and 5
    assert (scores > info.open_set["threshold"]).all()
    assert any("open-set threshold" in line for line in trained.logs)



def test_every_trained_model_carries_class_references_for_taught_labels(trained):
    from tagteller import taught

    loaded = Engine(intra_threads=1).load(trained.result.installed_path)
    refs = taught.references_of(loaded)  # parses and checks them against the model's labels
    assert refs.labels == loaded.info.labels and refs.prototypes.shape[0] == len(loaded.info.labels)
    assert refs.prototypes.shape[1] == loaded.embed(np.zeros((1, *loaded.info.input_size, loaded.info.channels), np.float32)).shape[1]
    assert loaded.info.class_references["counts"] and sum(loaded.info.class_references["counts"]) > 0


def test_installed_model_describes_itself_and_scans_as_measured(trained):
    import onnx

    installed = trained.result.installed_path
    assert sha256(installed) == sha256(trained.run_dir / "model.onnx")
    graph = onnx.load(str(installed)).graph
    assert not [n.op_type for n in graph.node if "Random" in n.op_type]  # no augmentation in the graph
    loaded = Engine(intra_threads=1).load(installed)
    info = loaded.info
    assert info.labels == LABELS and info.input_size == (32, 32) and info.color_mode == "RGB"
    assert info.output == "probabilities" and info.model_version == trained.run_dir.name
    assert info.training["backbone"] == "cnn" and info.training["epochs"] == 4
    assert info.training["command_line"] == "tagteller train test"
    assert info.training["data_fingerprint"] == trained.history()["data_fingerprint"]
    assert set(info.metrics["per_class_recall"]) == set(LABELS)
    _, val = val_samples(trained.data)
    readable = [s for s in val if s.key != "green/broken.jpg"]
    assert info.metrics["val_count"] == len(readable)
    results = list(Engine(intra_threads=1).scan(loaded, [s.path for s in readable], top_k=1))
    accuracy = np.mean([r.top.label == s.label for r, s in zip(results, readable)])
    assert accuracy == pytest.approx(info.metrics["val_accuracy"], abs=1e-6)
    assert accuracy >= 0.8  # the tint is easy to learn; chance is 1/3


def export_best(trained: Trained, out: Path, *options: str):
    """``tagteller export`` of the trained run's checkpoint to ``out``, with its data (the
    colours domain registered)."""
    from tagteller.cli import build_app

    return CliRunner().invoke(build_app(), [
        "export", "--domain", "colours", "--checkpoint", str(trained.run_dir / "best.keras"),
        "--output", str(out), "--data", str(trained.data), *options])


def test_export_command_on_a_saved_checkpoint(trained, tmp_path):
    from tagteller.cli import build_app

    register(colours_domain())
    out = tmp_path / "exported.onnx"
    result = export_best(trained, out, "--quantize", "int8")
    assert result.exit_code == 0, result.output
    info = Engine(intra_threads=1).load(out).info
    assert info.labels == LABELS and info.metrics["parity"]["passed"]
    assert info.metrics["val_accuracy"] == pytest.approx(trained.result.metrics["val_accuracy"])
    int8 = info.metrics["int8"]
    assert set(int8) >= {"val_accuracy", "accuracy_drop", "kept", "size_bytes"}
    assert (tmp_path / "exported-int8.onnx").is_file() == int8["kept"]
    # without data: parity on random pixels, metrics from the training history
    out2 = tmp_path / "nodata.onnx"
    result = CliRunner().invoke(build_app(), ["export", "--domain", "colours", "--checkpoint",
                                              str(trained.run_dir / "best.keras"), "--output", str(out2)])
    assert result.exit_code == 0, result.output
    meta = Engine(intra_threads=1).load(out2).info.metrics
    assert meta["source"].startswith("training history") and meta["parity"]["images"] == 32


def test_export_with_a_given_temperature_calibrates_with_it(trained, tmp_path):
    """``--temperature`` (the recipe's, from repeated splits) replaces the fit on the small split:
    the graph divides by it, and the metadata says it was given and what a fit here would be."""
    register(colours_domain())
    out = tmp_path / "given.onnx"
    result = export_best(trained, out, "--temperature", "2.5")
    assert result.exit_code == 0, result.output
    assert "temperature given" in result.output
    info = Engine(intra_threads=1).load(out).info
    cal = info.calibration
    assert cal["temperature"] == 2.5 and "given" in cal["method"]
    fitted = Engine(intra_threads=1).load(trained.run_dir / "model.onnx").info.calibration["temperature"]
    assert cal["temperature_fitted_here"] == pytest.approx(fitted, rel=1e-3)
    assert cal["ece_after"] >= 0 and cal["images"] == info.metrics["val_count"]
    images = np.random.default_rng(3).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)

    def probabilities(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path))
        return session.run([session.get_outputs()[0].name], {session.get_inputs()[0].name: images})[0]

    given, own = probabilities(out), probabilities(trained.run_dir / "model.onnx")
    # both undo to the same logits: T_own * log(p_own) and 2.5 * log(p_given) differ by a constant per image
    diff = fitted * np.log(own.astype(np.float64)) - 2.5 * np.log(given.astype(np.float64))
    np.testing.assert_allclose(diff - diff.mean(axis=1, keepdims=True), 0, atol=2e-3)
    bad = export_best(trained, tmp_path / "bad.onnx", "--temperature", "-1")
    assert bad.exit_code != 0 and "--temperature -1.0: must be a positive number" in bad.output


def test_resume_starts_from_the_best_earlier_model(trained, isolated_home):
    from tagteller.train.trainer import TrainOptions, train_domain

    shutil.copytree(trained.home, isolated_home, dirs_exist_ok=True)
    first_best = trained.home / "data" / "runs" / "colours" / trained.run_dir.name / "best.keras"
    before = sha256(first_best)
    second = train_domain(colours_domain(), TrainOptions(data=trained.data, epochs=1), log=lambda _: None)
    history = json.loads((second.run_dir / "history.json").read_text())
    resumed = history["resumed_from"]
    assert resumed["run_id"] == trained.run_dir.name and resumed["start_phase"] == 0
    # the earlier model, measured again on the same split, scores what its run recorded
    assert resumed["val_accuracy_before"] == pytest.approx(trained.history()["best"]["val_accuracy"], abs=1e-6)
    assert sha256(isolated_home / "data" / "runs" / "colours" / trained.run_dir.name / "best.keras") == before
    fresh = train_domain(colours_domain(), TrainOptions(data=trained.data, epochs=1, fresh=True), log=lambda _: None)
    assert "resumed_from" not in json.loads((fresh.run_dir / "history.json").read_text())
    # only runs with the same labels, backbone, input size and preprocessing are resumed from
    from tagteller.runs import resume_candidates

    found, _ = resume_candidates("colours", LABELS, tiny_recipe())
    assert [r.run_id for r in found][0] in {trained.run_dir.name, second.run_dir.name, fresh.run_dir.name}
    assert len(found) == 3
    for labels, recipe in ((("red", "green"), tiny_recipe()), (LABELS, tiny_recipe(input_size=(40, 40))),
                           (LABELS, tiny_recipe(preprocessing=Preprocessing(resize="pad")))):
        found, notes = resume_candidates("colours", labels, recipe)
        assert found == [] and len(notes) == 3


def test_train_with_a_given_temperature_ships_it(trained, isolated_home, tmp_path):
    from tagteller.train.trainer import TrainOptions, train_domain

    logs: list[str] = []
    result = train_domain(colours_domain(), TrainOptions(data=trained.data, epochs=1, fresh=True, temperature=1.7,
                                                         install_to=tmp_path / "given.onnx"), log=logs.append)
    calibration = Engine(intra_threads=1).load(result.run_dir / "model.onnx").info.calibration
    assert calibration["temperature"] == 1.7 and "given" in calibration["method"]
    assert any("temperature given" in line for line in logs)


def test_installs_only_when_better_unless_forced(trained, isolated_home):
    from tagteller.evaluate.measure import measure_model
    from tagteller.train.trainer import TrainOptions, train_domain

    target = installed_model_path("colours")
    target.parent.mkdir(parents=True)
    colour_model(target, domain="colours", labels=LABELS, size=(32, 32))  # classifies by mean colour
    _, val = val_samples(trained.data)
    readable = [s for s in val if s.key != "green/broken.jpg"]
    assert measure_model(target, readable).accuracy == 1.0  # nothing can beat it
    before = sha256(target)
    kept = train_domain(colours_domain(), TrainOptions(data=trained.data, epochs=1, fresh=True), log=lambda _: None)
    assert kept.outcome == "kept" and kept.exit_code == 0 and "not better" in kept.message
    assert sha256(target) == before
    assert json.loads((kept.run_dir / "metrics.json").read_text())["install"]["current_val_accuracy"] == 1.0
    forced = train_domain(colours_domain(), TrainOptions(data=trained.data, epochs=1, fresh=True, force=True),
                          log=lambda _: None)
    assert forced.outcome == "installed" and sha256(target) == sha256(forced.run_dir / "model.onnx")


def test_a_model_failing_parity_is_never_installed(trained, monkeypatch):
    from tagteller.train import export
    from tagteller.train.trainer import TrainOptions, train_domain

    monkeypatch.setattr(export, "PARITY_MAX_ABS_DIFF", 0.0)  # no difference is small enough
    result = train_domain(colours_domain(), TrainOptions(data=trained.data, epochs=1, fresh=True), log=lambda _: None)
    assert result.outcome == "refused" and result.exit_code == 1
    assert not installed_model_path("colours").exists()
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["parity"]["passed"] is False and metrics["install"]["install"] is False


def test_feedback_joins_the_training_side_only(trained):
    from tagteller.feedback import file_path
    from tagteller.train.trainer import TrainOptions, train_domain

    domain = colours_domain()
    for label, name in (("red", "red/001.png"), ("blue", "blue/003.png")):
        file_path(domain, trained.data / name, label)
    logs: list[str] = []
    with_feedback = train_domain(domain, TrainOptions(data=trained.data, epochs=1, fresh=True), log=logs.append)
    history = json.loads((with_feedback.run_dir / "history.json").read_text())
    assert history["counts"]["feedback"] == 2
    assert history["counts"]["train"] == trained.history()["counts"]["train"] + 2
    assert history["val_keys_sha256"] == trained.history()["val_keys_sha256"]
    assert any("added 2 feedback image(s)" in line for line in logs)
    without = train_domain(domain, TrainOptions(data=trained.data, epochs=1, fresh=True, use_feedback=False),
                           log=lambda _: None)
    assert json.loads((without.run_dir / "history.json").read_text())["counts"]["feedback"] == 0


def test_idx_layout_trains_a_grayscale_model_from_the_command_line(tmp_path):
    from tagteller.cli import build_app

    recipe = tiny_recipe(input_size=(28, 28), preprocessing=Preprocessing(color_mode="L"), pooling="flatten",
                         test_time_flip=True,
                         augmentation={"flip": False, "rotation": 0.0, "zoom": 0.05, "contrast": 0.0, "erasing": 0.25})
    register(colours_domain("shades", recipe=recipe, layout=IdxLayout(class_names=IDX_LABELS), labels=IDX_LABELS))
    data = make_idx_dataset(tmp_path / "idx", per_class=20)
    result = CliRunner().invoke(build_app(), ["train", "--domain", "shades", str(data), "--epochs", "2", "--yes",
                                              "--seed", "3"])
    assert result.exit_code == 0, result.output
    loaded = Engine(intra_threads=1).load(installed_model_path("shades"))
    assert loaded.info.channels == 1 and loaded.info.labels == IDX_LABELS
    dataset = IdxLayout(class_names=IDX_LABELS).load(data)
    scanned = list(Engine(intra_threads=1).scan(loaded, [s.array for s in dataset.samples[:5]]))
    assert all(r.ok for r in scanned)
    import onnx

    ops = {node.op_type for node in onnx.load(installed_model_path("shades")).graph.node}
    assert "GlobalAveragePool" not in ops and "ReduceMean" not in ops  # flattened, not pooled
    # test_time_flip: the exported graph averages the image and its mirror, so both get one answer.
    session = ort.InferenceSession(str(installed_model_path("shades")), providers=["CPUExecutionProvider"])
    images = np.stack([s.array for s in dataset.samples[:4]]).astype(np.float32).reshape(4, 28, 28, 1)
    straight, mirrored = (session.run(None, {"image": x})[0] for x in (images, images[:, :, ::-1].copy()))
    np.testing.assert_allclose(straight, mirrored, atol=1e-5)
    assert not np.allclose(straight[0], straight[1])  # and it still tells images apart


def test_csv_manifest_layout_trains(tmp_path):
    from tagteller.train.trainer import TrainOptions, train_domain

    domain = colours_domain("tags", layout=CsvManifestLayout(group_column="group"))
    data = make_csv_dataset(tmp_path / "csv", per_class=10)
    result = train_domain(domain, TrainOptions(data=data, epochs=1), log=lambda _: None)
    assert result.outcome == "installed"
    history = json.loads((result.run_dir / "history.json").read_text())
    assert history["counts"]["skipped"] == 1  # the manifest row whose file is missing
    assert history["counts"]["train"] + history["counts"]["val"] == 30


def test_int8_copy_keeps_the_calibrated_head_and_the_gate_in_float(trained):
    """quant_pre_process fuses the gate's MatMul and Add into one Gemm under another name; that
    node must stay float too, or the score is squeezed into the 256 levels the calibration images
    span (a strong gate's own images all sit below 0.5, and nothing above 0.5 survives)."""
    import onnx
    from PIL import Image

    from tagteller.openset_graph import ADDED_NODES, OOD_OUTPUT
    from tagteller.train.export import quantize_int8

    float_model = onnx.load(str(trained.result.installed_path))
    height, width = (d.dim_value for d in float_model.graph.input[0].type.tensor_type.shape.dim[1:3])
    images = np.random.default_rng(0).uniform(0, 255, (48, height, width, 3)).astype(np.float32)
    _, val = val_samples(trained.data)
    own = np.stack([np.asarray(Image.open(s.path).convert("RGB").resize((width, height)), np.float32)
                    for s in val if s.key != "green/broken.jpg"])
    int8 = quantize_int8(float_model, own)
    quantized = {n.name for n in int8.graph.node if n.op_type == "QuantizeLinear"}
    gate_inputs = {i for n in int8.graph.node if n.name.split("/")[0] in ADDED_NODES for i in n.input}
    assert not any(name.startswith("tagteller_gate") for name in quantized), sorted(quantized)
    assert "tagteller_gate_w" in gate_inputs  # the float weights, not a dequantized copy
    scores = {}
    for name, proto in (("float", float_model), ("int8", int8)):
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        scores[name] = session.run([OOD_OUTPUT], {session.get_inputs()[0].name: np.concatenate([own, images])})[0]
    # only the network's convolutions are rounded: the score follows the float one, noise included
    assert np.corrcoef(scores["float"], scores["int8"])[0, 1] > 0.95
    assert scores["int8"][len(own):].max() > 0.5 or scores["float"][len(own):].max() <= 0.5
