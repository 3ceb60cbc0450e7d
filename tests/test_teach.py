"""``tagteller teach`` / ``forget`` and taught labels in scans (:mod:`tagteller.taught`), on a tiny
generated model whose answer and embedding are the photo's mean colour.

The model (:func:`paint_model`): ``probabilities`` = softmax(mean colour @ W) over red, green and
blue; ``ood_score`` = the distance of the mean colour from the nearest primary colour (unknown
over ``THRESHOLD``), so yellow and purple photos are ``unknown`` until taught; ``embedding`` = the L2-normalised mean colour times a mixing matrix (an
"upgraded" model mixes differently: its embedding changes). Class references come from generated
validation photos through the model's own embedding, as at export.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image
from typer.testing import CliRunner

from tagteller import plugins, taught
from tagteller.cli import build_app
from tagteller.domain import Domain
from tagteller.engine import Engine
from tagteller.modelfile import ModelInfo, embed_metadata, save_model
from tagteller.paths import installed_model_path
from tagteller.preprocessing import Preprocessing
from tests.builders import DomainsPlugin
from tests.conftest import REPO

LABELS = ("red", "green", "blue")
PRIMARIES = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.float32)
THRESHOLD = 90.0
SIZE = (16, 16)


def paint_graph(mix: np.ndarray) -> onnx.ModelProto:
    """mean colour -> probabilities (softmax of colour @ 0.05 I), ood_score (distance to the
    nearest primary), embedding (L2-normalised colour @ mix)."""
    h, w = SIZE
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        helper.make_node("Unsqueeze", ["pooled", "one"], ["pooled3"]),  # (N, 1, 3)
        helper.make_node("Sub", ["pooled3", "primaries"], ["diff"]),  # (N, 3, 3)
        helper.make_node("Mul", ["diff", "diff"], ["squared"]),
        helper.make_node("ReduceSum", ["squared", "two"], ["sum_squared"], keepdims=0),  # (N, 3)
        helper.make_node("ReduceMin", ["sum_squared", "one"], ["nearest"], keepdims=0),  # (N,)
        helper.make_node("Sqrt", ["nearest"], ["ood_score"]),
        helper.make_node("MatMul", ["pooled", "mix"], ["mixed"]),
        helper.make_node("LpNormalization", ["mixed"], ["embedding"], axis=1, p=2),
    ]
    init = [
        helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("two", TensorProto.INT64, [1], [2]),
        helper.make_tensor("W", TensorProto.FLOAT, [3, 3], (np.eye(3) * 0.05).ravel().tolist()),
        helper.make_tensor("primaries", TensorProto.FLOAT, [3, 3], PRIMARIES.ravel().tolist()),
        helper.make_tensor("mix", TensorProto.FLOAT, [3, 3], np.asarray(mix, np.float32).ravel().tolist()),
    ]
    graph = helper.make_graph(
        nodes, "paint", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", h, w, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("ood_score", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3])], initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def varied(colour, count: int, seed: int, spread: float = 12.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0, spread, (count, 3)), 0, 255)


def paint_model(path: Path, mix=None, version="1", references=True, labels=LABELS) -> Path:
    """Write the paint model with class references from 20 generated validation photos per class
    (``mix``: the colour mixing matrix, the identity by default)."""
    proto = paint_graph(np.eye(3) if mix is None else mix)
    info = ModelInfo(domain="paints", labels=tuple(labels), height=SIZE[0], width=SIZE[1], color_mode="RGB",
                     preprocessing=Preprocessing(), model_version=version,
                     open_set={"output": "ood_score", "threshold": THRESHOLD, "embedding_output": "embedding"})
    embed_metadata(proto, info)
    save_model(proto, path)
    if references:
        model = Engine().load(path)
        colours = np.concatenate([varied(c, 20, seed=i) for i, c in enumerate(PRIMARIES)])
        images = np.broadcast_to(colours[:, None, None, :], (len(colours), *SIZE, 3)).astype(np.float32)
        refs = taught.class_references(model.embed(images), np.repeat(np.arange(3), 20), tuple(labels))
        info = dataclasses.replace(info, class_references=refs)
        embed_metadata(proto, info)
        save_model(proto, path)
    return path


def photos(folder: Path, colour, count: int, seed: int, prefix: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, c in enumerate(varied(colour, count, seed)):
        path = folder / f"{prefix}-{i}.{'png' if i % 2 else 'jpg'}"
        Image.new("RGB", (40 + 3 * i, 30 + 2 * i), tuple(int(v) for v in c)).save(path)
        out.append(path)
    return out


@pytest.fixture
def paints(tmp_path):
    """Domain ``paints`` (new labels allowed) with the paint model, and ``fixed-paints`` (none)."""
    model = paint_model(tmp_path / "paints.onnx")
    plugins.register_plugin(DomainsPlugin(
        Domain(name="paints", description="paint colours", labels=LABELS, model_path=model, allow_new_labels=True),
        Domain(name="fixed-paints", description="no new labels", labels=LABELS, model_path=model),
    ), name="paint-domains")
    return {"model": model, "yellow": photos(tmp_path / "yellow", (250, 235, 10), 6, 1, "yellow"),
            "purple": photos(tmp_path / "purple", (150, 20, 160), 5, 2, "purple"),
            "red": photos(tmp_path / "red", (240, 10, 10), 3, 3, "red"),
            "tmp": tmp_path}


def run(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def scan_records(*paths, domain="paints"):
    result = run("scan", "--domain", domain, "--format", "jsonl", *paths)
    return result, [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_taught_label_is_answered_and_no_longer_unknown(paints):
    before, records = scan_records(*paints["yellow"][5:])
    assert before.exit_code == 0
    assert records[0]["status"] == "unknown"  # the gate never saw yellow
    result = run("teach", "--domain", "paints", "yellow", *paints["yellow"][:5])
    assert result.exit_code == 0, result.stderr
    assert "taught 'yellow' to paints" in result.stdout and "5 new photo(s), 5 in all" in result.stdout
    after, records = scan_records(*paints["yellow"][5:], *paints["red"])
    assert after.exit_code == 0
    yellow, *reds = records
    assert yellow["status"] == "ok" and yellow["label"] == "yellow"
    assert all(r["status"] == "ok" and r["label"] == "red" for r in reds)


def test_taught_scoring_keeps_the_models_own_answers_in_proportion(paints):
    model = Engine().load(paints["model"])
    refs = taught.references_of(model)
    yellow = model.embed(np.full((5, *SIZE, 3), (250, 235, 10), np.float32))
    scorer = taught.scorer(refs, {"yellow": yellow})
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], np.float32)
    embeddings = model.embed(np.stack([np.full((*SIZE, 3), c, np.float32) for c in ((250, 235, 10), (0, 0, 250))]))
    out, scores = scorer.apply(probs, np.array([200.0, 10.0], np.float32), THRESHOLD, embeddings)
    assert out.shape == (2, 4) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert out[0].argmax() == 3 and out[1].argmax() == 2  # yellow taught; blue stays blue
    assert np.allclose(out[:, :3] / out[:, :3].sum(axis=1, keepdims=True), probs, atol=1e-5)
    assert scores[0] < THRESHOLD  # recognised as the taught label: accepted
    assert scores[1] == pytest.approx(10.0)  # already accepted: unchanged


def test_fewer_than_five_photos_are_refused_and_nothing_is_stored(paints):
    result = run("teach", "--domain", "paints", "purple", *paints["purple"][:4])
    assert result.exit_code == 2
    assert "needs at least 5 photos that decode; got 4 usable photo(s)" in result.stderr
    assert not taught.taught_dir("paints").exists() or not taught.index_path("paints").exists()


def test_bad_photos_get_one_line_each_and_the_rest_are_taught(paints):
    bad = paints["tmp"] / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    empty = paints["tmp"] / "empty.png"
    empty.write_bytes(b"")
    result = run("teach", "--domain", "paints", "yellow", bad, *paints["yellow"][:5], empty,
                 paints["tmp"] / "missing.jpg")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 3
    assert any("broken.jpg" in line for line in lines) and any("empty.png" in line for line in lines)
    assert any("missing.jpg" in line for line in lines)
    assert "3 photo(s) not taught" in result.stderr
    assert "5 new photo(s), 5 in all" in result.stdout
    assert taught.read_index("paints")["yellow"].photos


def test_bad_photos_count_against_the_minimum(paints):
    bad = paints["tmp"] / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = run("teach", "--domain", "paints", "purple", bad, *paints["purple"][:4])
    assert result.exit_code == 2 and "broken.png" in result.stderr and "got 4 usable photo(s)" in result.stderr


def test_labels_the_domain_forbids_are_refused(paints):
    result = run("teach", "--domain", "fixed-paints", "yellow", *paints["yellow"][:5])
    assert result.exit_code == 2 and "does not accept new labels" in result.stderr
    result = run("teach", "--domain", "paints", "red", *paints["red"], *paints["yellow"][:2])
    assert result.exit_code == 2 and "already a label of domain 'paints'" in result.stderr
    result = run("teach", "--domain", "paints", "Red", *paints["yellow"][:5])
    assert result.exit_code == 2 and "only in letter case" in result.stderr
    result = run("teach", "--domain", "paints", "../etc", *paints["yellow"][:5])
    assert result.exit_code == 2
    assert not taught.index_path("paints").exists()


def test_teach_list_and_forget(paints):
    assert run("teach", "--domain", "paints", "yellow", *paints["yellow"][:5]).exit_code == 0
    assert run("teach", "--domain", "paints", "purple", *paints["purple"]).exit_code == 0
    listing = run("teach", "--list")
    assert listing.exit_code == 0
    rows = [line for line in listing.stdout.splitlines() if line.startswith("paints")]
    assert len(rows) == 2 and "purple" in rows[0] and "yellow" in rows[1] and "ready (model 1)" in rows[1]
    data = json.loads(run("teach", "--list", "--json").stdout)
    assert {(r["label"], r["photos"]) for r in data} == {("yellow", 5), ("purple", 5)}
    forgot = run("forget", "--domain", "paints", "yellow")
    assert forgot.exit_code == 0 and "forgot 'yellow' in paints (5 photo(s) removed)" in forgot.stdout
    assert len(list(taught.photos_dir("paints").iterdir())) == 5  # purple's are kept
    _, records = scan_records(paints["yellow"][5])
    assert records[0]["label"] != "yellow" and records[0]["status"] == "unknown"
    again = run("forget", "--domain", "paints", "yellow")
    assert again.exit_code == 2 and "not a taught label" in again.stderr and "purple" in again.stderr
    assert run("forget", "--domain", "paints", "purple").exit_code == 0
    assert not taught.index_path("paints").exists()
    assert "no labels taught" in run("teach", "--list").stdout


def test_store_records_the_model_and_keeps_the_photos(paints):
    run("teach", "--domain", "paints", "yellow", *paints["yellow"][:5])
    model = Engine().load(paints["model"])
    digest = taught.model_sha256(model)
    with np.load(taught.embeddings_path("paints", digest)) as data:
        meta = json.loads(str(data["meta"]))
        assert meta["model_sha256"] == digest and meta["model_version"] == "1"
        assert data["embeddings"].shape == (5, 3)
    kept = sorted(p.name for p in taught.photos_dir("paints").iterdir())
    assert len(kept) == 5 and all(p.split(".")[1] in ("jpg", "png") for p in kept)
    assert not any(p.name.startswith(".") for p in taught.taught_dir("paints").rglob("*"))  # no temp files left


def test_a_model_upgrade_re_embeds_the_stored_photos(paints, caplog):
    assert run("teach", "--domain", "paints", "yellow", *paints["yellow"][:5]).exit_code == 0
    rotation = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], np.float32)  # a new embedding space
    upgraded = paint_model(installed_model_path("paints"), mix=rotation, version="2")
    new = Engine().load(upgraded)
    old_digest = taught.model_sha256(Engine().load(paints["model"]))
    assert not taught.embeddings_path("paints", taught.model_sha256(new)).exists()
    _, records = scan_records(paints["yellow"][5], paints["red"][0])
    assert [r["label"] for r in records] == ["yellow", "red"] and records[0]["status"] == "ok"
    assert records[0]["model_version"] == "2"
    with np.load(taught.embeddings_path("paints", taught.model_sha256(new))) as data:
        assert json.loads(str(data["meta"]))["model_version"] == "2"
        stored = data["embeddings"]
    with np.load(taught.embeddings_path("paints", old_digest)) as data:
        assert not np.allclose(np.sort(stored, axis=0), np.sort(data["embeddings"], axis=0))  # really re-embedded
    assert any("embedded by model 2 (5 photo(s))" in r.getMessage() for r in caplog.records)
    assert "ready (model 2)" in run("teach", "--list").stdout


def test_an_upgrade_names_the_labels_to_teach_again_when_photos_are_gone(paints, caplog):
    assert run("teach", "--domain", "paints", "yellow", *paints["yellow"][:5]).exit_code == 0
    for photo in list(taught.photos_dir("paints").iterdir())[:2]:
        photo.unlink()
    paint_model(installed_model_path("paints"), mix=np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]]), version="2")
    _, records = scan_records(paints["yellow"][5])
    assert records[0]["label"] != "yellow"
    assert any("'yellow'" in r.getMessage() and "teach it again" in r.getMessage() for r in caplog.records)
    assert "teach again: 3 of its photos left" in run("teach", "--list").stdout


def test_a_taught_label_the_new_model_has_is_left_to_the_model(paints, caplog):
    assert run("teach", "--domain", "paints", "yellow", *paints["yellow"][:5]).exit_code == 0
    paint_model(installed_model_path("paints"), version="2", labels=("red", "green", "yellow"))
    _, records = scan_records(paints["red"][0])
    assert records[0]["label"] == "red" and [p["label"] for p in records[0]["top"]].count("yellow") == 1
    assert any("now one of the model's own labels" in r.getMessage() for r in caplog.records)
    assert "now one of model 2's own labels (forget it)" in run("teach", "--list").stdout


def test_a_model_without_class_references_is_refused_clearly(paints, tmp_path):
    paint_model(installed_model_path("paints"), references=False)
    result = run("teach", "--domain", "paints", "yellow", *paints["yellow"][:5])
    assert result.exit_code == 2 and "has no 'class_references'" in result.stderr
    assert "scripts/add_class_references.py" in result.stderr


def test_teach_from_the_feedback_inbox(paints):
    from tagteller import feedback

    for path in paints["purple"]:
        feedback.file_path("paints", path, "purple", new_label=True)
    result = run("teach", "--domain", "paints", "purple", "--from-feedback")
    assert result.exit_code == 0, result.stderr
    assert "5 new photo(s), 5 in all" in result.stdout
    assert run("teach", "--domain", "paints", "lilac", "--from-feedback").exit_code == 2


def test_teaching_more_photos_adds_to_the_label_and_a_photo_has_one_label(paints):
    run("teach", "--domain", "paints", "yellow", *paints["yellow"][:5])
    more = run("teach", "--domain", "paints", "yellow", *paints["yellow"][3:])
    assert more.exit_code == 0 and "1 new photo(s) (2 already taught), 6 in all" in more.stdout
    moved = run("teach", "--domain", "paints", "mustard", *paints["yellow"][:5])
    assert moved.exit_code == 0
    index = taught.read_index("paints")
    assert len(index["mustard"].photos) == 5 and len(index["yellow"].photos) == 1


def test_a_damaged_store_is_an_error_not_silence(paints):
    taught.index_path("paints").parent.mkdir(parents=True)
    taught.index_path("paints").write_text("{not json")
    result = run("teach", "--list", "--domain", "paints")
    assert result.exit_code == 2 and "taught labels cannot be read" in result.stderr


def test_class_references_describe_the_models_own_classes():
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8, dtype=np.float32)
    labels = np.repeat(np.arange(4), 15)
    embeddings = centres[labels] + rng.normal(0, 0.15, (60, 8)).astype(np.float32)
    refs = taught.class_references(embeddings, labels, ("a", "b", "c", "d"))
    parsed = taught.ClassReferences.from_metadata(refs, ("a", "b", "c", "d"), "test")
    means = taught.l2_normalise(np.stack([taught.l2_normalise(embeddings[labels == c]).mean(0) for c in range(4)]))
    assert np.allclose(parsed.prototypes, means, atol=2e-3)  # float16 storage
    assert refs["prototype_accuracy"] == 1.0 and refs["counts"] == [15] * 4
    assert taught.MIN_TEMPERATURE <= refs["temperature"] < 0.2
    assert refs["shot_deficit"] > 0  # a 5-photo prototype is further from its class than all of them
    assert refs["accept_similarity"] < refs["own_similarity_median"]
    with pytest.raises(taught.TeachError, match="labels are not the model's"):
        taught.ClassReferences.from_metadata(refs, ("a", "b", "c", "e"), "test")
    with pytest.raises(taught.TeachError, match="not usable"):
        taught.ClassReferences.from_metadata({**refs, "prototypes": refs["prototypes"][:-8]}, ("a", "b", "c", "d"), "t")


def test_taught_photos_become_training_data_when_asked(paints, tmp_path):
    from tagteller.train.trainer import prepare_data

    run("teach", "--domain", "paints", "yellow", *paints["yellow"][:5])
    data_dir = tmp_path / "data"
    for label, colour in zip(LABELS, PRIMARIES):
        photos(data_dir / label, colour, 5, 7, label)
    dom = plugins.get_domain("paints")
    plain = prepare_data(dom, data_dir, dom.recipe, use_feedback=False, log=lambda text: None)
    assert "yellow" not in plain.labels
    logged = []
    folded = prepare_data(dom, data_dir, dom.recipe, use_feedback=False, log=logged.append, use_taught=True)
    assert folded.labels == (*LABELS, "yellow")
    taught_keys = [s.key for s in folded.train + folded.val if s.key.startswith("taught/yellow/")]
    assert len(taught_keys) == 5 and any(s.key.startswith("taught/") for s in folded.val)
    assert folded.fingerprint != plain.fingerprint
    assert any("added 5 taught photo(s) (yellow)" in line for line in logged)


def test_teach_and_scan_never_import_tensorflow(paints, tmp_path):
    code = f"""
import sys, json
from typer.testing import CliRunner
from tagteller import plugins
from tagteller.cli import build_app
from tagteller.domain import Domain
from tests.builders import DomainsPlugin
plugins.register_plugin(DomainsPlugin(Domain(name="paints", description="p", labels={LABELS!r},
    model_path={str(paints['model'])!r}, allow_new_labels=True)), name="p")
app = build_app()
photos = {[str(p) for p in paints['yellow']]!r}
r = CliRunner().invoke(app, ["teach", "--domain", "paints", "yellow", *photos[:5]])
assert r.exit_code == 0, r.output
r = CliRunner().invoke(app, ["scan", "--domain", "paints", "--format", "jsonl", photos[5]])
assert json.loads(r.stdout)["label"] == "yellow", r.output
r = CliRunner().invoke(app, ["forget", "--domain", "paints", "yellow"])
assert r.exit_code == 0, r.output
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "TAGTELLER_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_the_page_offers_to_teach_a_new_label_once_the_inbox_has_enough_photos(paints):
    from fastapi.testclient import TestClient

    from tagteller.serve.app import create_app

    with TestClient(create_app(engine=Engine(intra_threads=1))) as client:
        offers = []
        for path in paints["purple"]:
            response = client.post("/v1/feedback", params={"domain": "paints", "label": "purple", "new_label": "true"},
                                   files={"file": (path.name, path.read_bytes(), "image/png")})
            assert response.status_code == 200, response.text
            offers.append(response.json()["teach"])
        assert [o["ready"] for o in offers] == [False] * 4 + [True]
        assert offers[-1] == {"label": "purple", "photos": 5, "new_photos": 5, "taught": False, "needs": 5,
                              "ready": True}
        own = client.post("/v1/feedback", params={"domain": "paints", "label": "red"},
                          files={"file": ("r.png", paints["red"][1].read_bytes(), "image/png")})
        assert "teach" not in own.json()  # the domain's own label: nothing to teach
        taught_now = client.post("/v1/teach", params={"domain": "paints", "label": "purple"})
        assert taught_now.status_code == 200, taught_now.text
        assert taught_now.json()["photos"] == 5 and "taught 'purple'" in taught_now.json()["message"]
        scan = client.post("/v1/scan", params={"domain": "paints"},
                           files={"file": ("p.png", paints["purple"][0].read_bytes(), "image/png")})
        assert scan.json()["label"] == "purple" and scan.json()["status"] == "ok", scan.json()
        refused = client.post("/v1/teach", params={"domain": "fixed-paints", "label": "purple"})
        assert refused.status_code == 400 and "does not accept new labels" in refused.json()["error"]


def test_the_benchmark_script_runs_and_records_its_figures(tmp_path):
    """``benchmarks/teach.py --quick``: no held-out models here (the accuracy part says so), the
    speed part on the shipped clothing-tags model. Figures are not checked for speed."""
    out = tmp_path / "teach.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "teach.py"), "--quick", "--cache", str(tmp_path / "cache"),
         "--results", str(tmp_path / "BENCHMARKS.md"), "--models", str(tmp_path / "no-models"),
         "--cache-embeddings", str(tmp_path / "embeddings"), "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "TAGTELLER_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert all(not d["measured"] for d in data["accuracy"]["per_domain"].values())
    speed = data["speed"]
    assert speed["teach_median_s"] > 0 and len(speed["teach_wall_s"]) == 1
    assert speed["scan_plain_median_s"] > 0 and speed["model_call_taught_s"] > 0
    assert "Teach a label from 5 photos" in (tmp_path / "BENCHMARKS.md").read_text()


def test_an_index_naming_files_outside_the_store_is_refused(paints, tmp_path):
    assert run("teach", "--domain", "paints", "yellow", *paints["yellow"][:5]).exit_code == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    data = json.loads(taught.index_path("paints").read_text())
    data["labels"]["yellow"]["photos"].append("../../../../victim.txt")
    taught.index_path("paints").write_text(json.dumps(data))
    result = run("forget", "--domain", "paints", "yellow")
    assert result.exit_code == 2 and "not a kept photo's name" in result.stderr
    assert victim.read_text() == "keep me"


def test_a_damaged_store_never_stops_a_scan(paints, caplog):
    assert run("teach", "--domain", "paints", "yellow", *paints["yellow"][:5]).exit_code == 0
    taught.index_path("paints").write_text("{damaged")
    result, records = scan_records(paints["red"][0])
    assert result.exit_code == 0 and records[0]["label"] == "red"
    assert any("taught labels of paints not used" in r.getMessage() for r in caplog.records)
