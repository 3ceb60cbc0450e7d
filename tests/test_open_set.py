"""Knowing what a model does not know: the open-set score and threshold in the model file, the
``unknown`` answer (CLI table, JSON, JSONL, CSV, exit codes; the HTTP API), ``--accept-unknown``,
and scans without ``--domain`` across several domains.

The models are built here (``tests.builders.open_set_model``): the probabilities come from the
image's mean colour, the open-set score is the distance of that colour from the domain's
prototype colour. ``fruit`` knows reds (prototype red, 32x32), ``sea`` knows blues (prototype
blue, 16x16: it needs its own decode), both with threshold 300 (a pure colour of the other
primary is 360.6 away); ``paint`` is an old-style model with no open-set output.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tagteller import Domain, plugins, prices
from tagteller.cli import build_app
from tagteller.engine import Engine, Prediction, ScanResult, acceptance_margin, rank_answers
from tagteller.errors import ModelError
from tagteller.modelfile import ModelInfo, embed_metadata, parse_metadata
from tagteller.preprocessing import Preprocessing
from tests.builders import DomainsPlugin, colour_model, open_set_graph, open_set_model, solid_image

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)
#: 362.8 from red and 333.5 from blue: both reject it (threshold 300), sea is the closer.
GREENISH = (0, 255, 40)
#: Accepted by both: 132 from red (ratio 0.44) and 241 from blue (0.80): fruit answers.
REDDISH_PURPLE = (200, 0, 120)
#: Accepted by both: 241 from red (0.80) and 132 from blue (0.44): sea answers, although its top-1
#: probability (0.63, its weights are small) is far below fruit's (0.9997).
BLUISH_PURPLE = (120, 0, 200)
THRESHOLD = 300.0


def run(*args: str):
    return CliRunner().invoke(build_app(), list(args))


def build_models(folder: Path) -> dict[str, Path]:
    return {
        "fruit": open_set_model(folder / "fruit.onnx", domain="fruit", labels=("apple", "lime", "blueberry"),
                                prototype=RED, threshold=THRESHOLD, model_version="3"),
        "sea": open_set_model(folder / "sea.onnx", domain="sea", labels=("coral", "kelp", "water"),
                              prototype=BLUE, threshold=THRESHOLD, size=(16, 16), weights=np.eye(3) * 0.01,
                              model_version="5"),
        "paint": colour_model(folder / "paint.onnx", domain="paint"),
    }


def register(models: dict[str, Path], monkeypatch, names=("fruit", "sea"), extra=()) -> None:
    """Only these test domains (no built-in plugins): ``names`` from ``models``, plus ``extra``."""
    monkeypatch.setenv("TAGTELLER_PLUGINS", "")
    plugins.reset()
    labels = {"fruit": ("apple", "lime", "blueberry"), "sea": ("coral", "kelp", "water"),
              "paint": ("red", "green", "blue")}
    domains = [Domain(name=n, description=f"test {n}", labels=labels[n], model_path=models[n]) for n in names]
    plugins.register_plugin(DomainsPlugin(*domains, *extra), "open-set-test-domains")


@pytest.fixture
def models(tmp_path):
    return build_models(tmp_path / "models")


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, colour in [("red", RED), ("blue", BLUE), ("green", GREEN), ("greenish", GREENISH),
                         ("reddish-purple", REDDISH_PURPLE), ("bluish-purple", BLUISH_PURPLE)]:
        solid_image(folder / f"{name}.png", colour)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return folder


@pytest.fixture
def engine():
    eng = Engine(intra_threads=1, decode_workers=2)
    yield eng
    eng.close()


def jsonl(result) -> dict[str, dict]:
    return {Path(r["file"]).stem: r for r in map(json.loads, result.stdout.splitlines())}


# -- the model file -----------------------------------------------------------------------------

def test_open_set_and_calibration_metadata_are_read_and_shown(models, engine):
    info = engine.load(models["fruit"]).info
    assert info.ood_output == "ood_score" and info.ood_threshold == THRESHOLD
    assert info.open_set["score"] == "rgb-distance" and info.open_set["prototype"] == list(RED)  # extra keys kept
    assert info.calibration == {"temperature": 1.5, "ece_before": 0.08, "ece_after": 0.02}
    assert parse_metadata(info.to_metadata()) == info  # round trip
    old = engine.load(models["paint"]).info
    assert old.open_set is None and old.ood_threshold is None and "open_set" not in old.to_metadata()

    shown = json.loads(run("info", "--json", str(models["fruit"])).stdout)
    assert shown["open_set"]["threshold"] == THRESHOLD and shown["calibration"]["temperature"] == 1.5
    table = run("info", str(models["fruit"]))
    assert table.exit_code == 0
    assert "open-set score 'ood_score' (rgb-distance): unknown above 300" in table.stdout
    assert "temperature 1.5, ECE 0.08 -> 0.02" in table.stdout
    from tagteller.cli.info import describe_calibration

    given = describe_calibration({"temperature": 0.79, "ece_before": 0.13, "ece_after": 0.09,
                                  "temperature_fitted_here": 0.47})
    assert given == "temperature 0.79 (given; its own split's fit: 0.47), ECE 0.13 -> 0.09"


def test_embed_metadata_drops_a_stale_open_set(tmp_path):
    model = open_set_graph(("a", "b", "c"))
    base = dict(domain="fruit", labels=("a", "b", "c"), height=32, width=32, color_mode="RGB",
                preprocessing=Preprocessing())
    embed_metadata(model, ModelInfo(**base, open_set={"output": "ood_score", "threshold": 1.0}))
    assert "open_set" in {p.key for p in model.metadata_props}
    embed_metadata(model, ModelInfo(**base))
    assert "open_set" not in {p.key for p in model.metadata_props}


def _meta(**changes) -> dict[str, str]:
    meta = ModelInfo(domain="fruit", labels=("a", "b", "c"), height=32, width=32, color_mode="RGB",
                     preprocessing=Preprocessing()).to_metadata()
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in changes.items()})
    return meta


@pytest.mark.parametrize("key, value, fragment", [
    ("open_set", "[1, 2]", "'open_set' must be a JSON object"),
    ("open_set", "{not json", "'open_set' is not valid JSON"),
    ("open_set", {"threshold": 1.0}, "'open_set' output must name a graph output"),
    ("open_set", {"output": 3, "threshold": 1.0}, "'open_set' output must name a graph output"),
    ("open_set", {"output": "ood_score"}, "'open_set' threshold must be a finite number"),
    ("open_set", {"output": "ood_score", "threshold": "0.3"}, "'open_set' threshold must be a finite number"),
    ("open_set", {"output": "ood_score", "threshold": True}, "'open_set' threshold must be a finite number"),
    ("open_set", '{"output": "ood_score", "threshold": NaN}', "'open_set' threshold must be a finite number"),
    ("open_set", '{"output": "ood_score", "threshold": Infinity}', "'open_set' threshold must be a finite number"),
    ("open_set", {"output": "ood_score", "threshold": 1, "score": 7}, "'open_set' score must be a string"),
    ("open_set", {"output": "ood_score", "threshold": 1, "val_false_rejection": "5%"},
     "'open_set' val_false_rejection must be a finite number"),
    ("calibration", '"1.5"', "'calibration' must be a JSON object"),
    ("calibration", {"temperature": -1.0}, "'calibration' temperature must be a number more than 0"),
    ("calibration", {"temperature": "1.5"}, "'calibration' temperature must be a number more than 0"),
    ("calibration", {"temperature": 1.5, "ece_after": None}, "'calibration' ece_after must be a finite number"),
])
def test_bad_open_set_or_calibration_metadata_is_refused(key, value, fragment):
    with pytest.raises(ModelError, match="^where.onnx: .*" + fragment.replace("(", r"\(")):
        parse_metadata(_meta(**{key: value}), where="where.onnx")


@pytest.mark.parametrize("output, fragment", [
    ("distance", "names output 'distance', but the graph's outputs are embedding, ood_score, probabilities"),
    ("probabilities", "names output 'probabilities', which holds the probabilities"),
])
def test_open_set_output_must_be_in_the_graph(tmp_path, images, output, fragment):
    path = open_set_model(tmp_path / "bad.onnx", open_set={"output": output, "threshold": 1.0})
    with pytest.raises(ModelError, match=fragment):
        Engine(intra_threads=1).load(path)
    result = run("scan", "--model", str(path), str(images / "red.png"))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and fragment in result.stderr


def test_only_the_needed_outputs_are_run(models, engine, images):
    """The embedding output is tolerated but never fetched; an old model fetches its one output."""
    fetched = []
    for name in ("fruit", "paint"):
        loaded = engine.load(models[name])
        real = loaded.session

        class Spy:
            def run(self, names, feeds, _real=real):
                fetched.append(list(names))
                return _real.run(names, feeds)

        loaded.session = Spy()
        try:
            list(engine.scan(loaded, [images / "red.png"]))
        finally:
            loaded.session = real
    assert fetched == [["probabilities", "ood_score"], ["probs"]]


def test_plain_onnxruntime_reads_the_score_and_threshold_from_the_file(models):
    """What README's "Using a model without tagteller" shows: no tagteller import needed."""
    import onnxruntime as ort
    from PIL import Image

    sess = ort.InferenceSession(str(models["fruit"]), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    labels = json.loads(meta["labels"])
    spec = json.loads(meta["input"])
    open_set = json.loads(meta["open_set"])
    assert {o.name for o in sess.get_outputs()} >= {"probabilities", open_set["output"]}
    answers = {}
    for name, colour in [("red", RED), ("blue", BLUE)]:
        img = Image.new("RGB", (64, 48), colour).convert(spec["color_mode"]).resize((spec["width"], spec["height"]))
        x = np.asarray(img, np.float32).reshape(1, spec["height"], spec["width"], spec["channels"])
        probs, score = sess.run(["probabilities", open_set["output"]], {sess.get_inputs()[0].name: x})
        unknown = float(score[0]) > open_set["threshold"]
        answers[name] = "unknown" if unknown else labels[int(probs[0].argmax())]
    assert answers == {"red": "apple", "blue": "unknown"}


# -- one domain: the three statuses ----------------------------------------------------------------

def test_engine_results_carry_score_threshold_and_status(models, engine, images):
    loaded = engine.load(models["fruit"])
    red, blue, broken = engine.scan(loaded, [images / "red.png", images / "blue.png", images / "broken.jpg"])
    assert (red.status, red.ok, red.top.label, red.ood_score, red.ood_threshold) == ("ok", True, "apple", 0.0, THRESHOLD)
    assert blue.status == "unknown" and blue.ok and blue.rejected and blue.top.label == "blueberry"
    assert blue.ood_score == pytest.approx(math.dist(RED, BLUE), abs=0.01)
    assert broken.status == "error" and not broken.ok and broken.ood_score is None
    accepted = engine.classify(loaded, images / "blue.png", accept_unknown=True)
    assert accepted.status == "ok" and accepted.rejected and accepted.ood_score == blue.ood_score
    old = engine.classify(engine.load(models["paint"]), images / "blue.png")
    assert old.status == "ok" and old.ood_score is None and old.ood_threshold is None and not old.rejected


def test_json_and_jsonl_records_of_the_three_statuses(models, images, monkeypatch):
    register(models, monkeypatch)
    result = run("scan", "-d", "fruit", "-f", "json", str(images / "red.png"), str(images / "blue.png"))
    assert result.exit_code == 0, result.stderr  # an unknown is an answer, not a failure
    red, blue = json.loads(result.stdout)
    assert (red["status"], red["label"], red["sure"], red["ood_score"], red["ood_threshold"]) == \
        ("ok", "apple", True, 0.0, THRESHOLD)
    assert blue["status"] == "unknown"
    assert blue["label"] is None and blue["confidence"] is None and blue["sure"] is None
    assert [p["label"] for p in blue["top"]] == ["blueberry", "apple", "lime"]  # the best guesses are kept
    assert blue["ood_score"] > blue["ood_threshold"] == THRESHOLD
    assert blue["domain"] == "fruit" and blue["model_version"] == "3" and "alternatives" not in blue

    result = run("scan", "-d", "fruit", "-f", "jsonl", str(images))
    assert result.exit_code == 1  # broken.jpg
    records = jsonl(result)
    assert {k: r["status"] for k, r in records.items()} == {
        "red": "ok", "blue": "unknown", "green": "unknown", "greenish": "unknown", "reddish-purple": "ok",
        "bluish-purple": "ok", "broken": "error"}
    assert records["broken"]["ood_score"] is None and "1 of 7 input(s) failed" in result.stderr


def test_csv_columns_and_exit_codes(models, images, monkeypatch, tmp_path):
    register(models, monkeypatch)
    out = tmp_path / "scan.csv"
    result = run("scan", "-d", "fruit", "-f", "csv", "-o", str(out), str(images / "red.png"), str(images / "blue.png"))
    assert result.exit_code == 0
    rows = {Path(r["file"]).stem: r for r in csv.DictReader(io.StringIO(out.read_text()))}
    assert rows["red"]["status"] == "ok" and rows["red"]["label"] == "apple"
    assert float(rows["red"]["ood_score"]) == 0.0 and float(rows["red"]["ood_threshold"]) == THRESHOLD
    assert rows["blue"]["status"] == "unknown" and rows["blue"]["label"] == "" and rows["blue"]["sure"] == ""
    assert rows["blue"]["top"].startswith("blueberry:") and float(rows["blue"]["ood_score"]) > THRESHOLD
    result = run("scan", "-d", "fruit", "-f", "csv", str(images / "blue.png"), str(images / "broken.jpg"))
    assert result.exit_code == 1
    assert [r["status"] for r in csv.DictReader(io.StringIO(result.stdout))] == ["unknown", "error"]


def test_table_says_unknown(models, images, monkeypatch):
    register(models, monkeypatch)
    result = run("scan", "-d", "fruit", str(images / "red.png"), str(images / "blue.png"))
    assert result.exit_code == 0
    red_line, blue_line = [line for line in result.stdout.splitlines() if ".png" in line]
    assert "apple" in red_line and "unknown:" not in red_line
    assert "unknown: not like anything this domain knows" in blue_line
    assert "score 360.6 over 300" in blue_line and "best guesses: blueberry 100%" in blue_line


def test_accept_unknown_reports_the_best_label_and_keeps_the_score(models, images, monkeypatch):
    register(models, monkeypatch)
    result = run("scan", "-d", "fruit", "-f", "jsonl", "--accept-unknown", str(images / "blue.png"))
    assert result.exit_code == 0
    record = json.loads(result.stdout)
    assert record["status"] == "ok" and record["label"] == "blueberry"
    assert record["sure"] is False  # accepted although the model rejects it: never presented as sure
    assert record["ood_score"] > record["ood_threshold"]
    table = run("scan", "-d", "fruit", "--accept-unknown", str(images / "blue.png"))
    assert "blueberry" in table.stdout and "not sure: 100%" in table.stdout and "unknown:" not in table.stdout


def test_a_non_finite_score_is_unknown_and_the_json_stays_valid(tmp_path, images):
    path = open_set_model(tmp_path / "nan.onnx", score_scale=float("nan"))
    result = run("scan", "--model", str(path), "-f", "json", str(images / "red.png"))
    assert result.exit_code == 0
    [record] = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))
    assert record["status"] == "unknown" and record["ood_score"] is None and record["ood_threshold"] == 120.0


def test_unknown_gets_no_deal_check(models, images, monkeypatch):
    register(models, monkeypatch)
    prices.set_price("fruit", "apple", "1", "2", currency="EUR")
    prices.set_price("fruit", "blueberry", "3", "4", currency="EUR")
    result = run("scan", "-d", "fruit", "-f", "jsonl", "--price", "1.50", str(images / "red.png"),
                 str(images / "blue.png"))
    records = jsonl(result)
    assert records["red"]["deal_position"] == "within" and records["red"]["typical_low"] == "1.00"
    assert records["blue"]["price_paid"] == "1.50" and records["blue"]["deal"] is None
    assert records["blue"]["typical_low"] is None


# -- scans without --domain --------------------------------------------------------------------------

def test_scan_without_domain_answers_with_the_domain_that_accepts(models, images, monkeypatch):
    register(models, monkeypatch)
    result = run("scan", "-f", "jsonl", str(images))
    assert result.exit_code == 1  # broken.jpg
    records = jsonl(result)
    answers = {k: (r["status"], r["domain"], r["label"]) for k, r in records.items()}
    assert answers == {
        "red": ("ok", "fruit", "apple"),
        "blue": ("ok", "sea", "water"),
        "reddish-purple": ("ok", "fruit", "apple"),  # both accept; fruit's ratio is smaller
        "bluish-purple": ("ok", "sea", "water"),  # both accept; sea's ratio wins over fruit's probability
        "green": ("unknown", "fruit", None),  # equally far from both: the first domain is named
        "greenish": ("unknown", "sea", None),  # both reject: the closest domain is named
        "broken": ("error", "", None),
    }
    assert records["bluish-purple"]["confidence"] < 0.7 < records["bluish-purple"]["alternatives"][0]["confidence"]
    alternatives = records["reddish-purple"]["alternatives"]
    assert [(a["domain"], a["status"], a["label"]) for a in alternatives] == [("sea", "ok", "coral")]
    assert alternatives[0]["ood_score"] == pytest.approx(math.dist(REDDISH_PURPLE, BLUE), abs=0.01)
    assert records["red"]["model_version"] == "3" and records["blue"]["model_version"] == "5"
    assert records["greenish"]["alternatives"][0]["status"] == "unknown"
    assert records["broken"]["alternatives"] == []


def test_scan_without_domain_accept_unknown_takes_the_closest(models, images, monkeypatch):
    register(models, monkeypatch)
    record = json.loads(run("scan", "-f", "jsonl", "--accept-unknown", str(images / "greenish.png")).stdout)
    assert (record["status"], record["domain"], record["label"], record["sure"]) == ("ok", "sea", "kelp", False)


def test_scan_without_domain_table_and_csv_name_the_domain(models, images, monkeypatch):
    register(models, monkeypatch)
    table = run("scan", str(images / "blue.png"), str(images / "greenish.png"))
    assert table.exit_code == 0
    assert "DOMAIN" in table.stdout.splitlines()[0]
    blue, greenish = table.stdout.splitlines()[1:]
    assert "sea" in blue and "water" in blue
    assert "unknown: not like anything any domain knows" in greenish
    rows = list(csv.DictReader(io.StringIO(run("scan", "-f", "csv", str(images / "red.png")).stdout)))
    assert rows[0]["domain"] == "fruit" and rows[0]["alternatives"] == "sea:unknown"


def test_models_without_a_score_answer_when_no_scored_model_accepts(models, images, monkeypatch):
    """Old-style models accept everything: they lose to a model that recognises the image, and
    answer (by top-1 probability) when none does."""
    register(models, monkeypatch, names=("fruit", "sea", "paint"))
    records = jsonl(run("scan", "-f", "jsonl", str(images / "red.png"), str(images / "greenish.png")))
    assert (records["red"]["domain"], records["red"]["label"]) == ("fruit", "apple")
    assert (records["greenish"]["status"], records["greenish"]["domain"], records["greenish"]["label"]) == \
        ("ok", "paint", "green")
    assert records["greenish"]["ood_score"] is None


def test_domains_with_the_same_input_share_one_decode(models, images, engine, monkeypatch):
    import tagteller.engine as engine_module

    calls = []
    real = engine_module.prepare

    def counting(source, size, pre):
        calls.append(size)
        return real(source, size, pre)

    monkeypatch.setattr(engine_module, "prepare", counting)
    loaded = [engine.load(models[n]) for n in ("fruit", "sea", "paint")]  # fruit and paint: 32x32 RGB
    files = sorted(images.glob("*.png"))
    results = list(engine.scan_any(loaded, files, batch_size=4))
    assert len(results) == len(files)
    assert sorted(calls) == sorted([(32, 32)] * len(files) + [(16, 16)] * len(files))


def test_scan_without_domain_skips_broken_models_and_refuses_correct(models, images, monkeypatch, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    register(models, monkeypatch, extra=(
        Domain(name="cracked", description="broken", labels=("a", "b"), model_path=broken),
        Domain(name="untrained", description="no model", labels=("a", "b"))))
    result = run("scan", "-f", "jsonl", str(images / "red.png"))
    assert result.exit_code == 0 and json.loads(result.stdout)["domain"] == "fruit"
    assert "warning: domain 'cracked' skipped" in result.stderr and "untrained" not in result.stderr
    refused = run("scan", "--correct", "apple", str(images / "red.png"))
    assert refused.exit_code == 2 and "give --domain NAME too" in refused.stderr


def test_scan_without_domain_checks_each_answer_against_its_domains_prices(models, images, monkeypatch):
    register(models, monkeypatch)
    prices.set_price("fruit", "apple", "1", "2", currency="EUR")
    result = run("scan", "-f", "jsonl", "--price", "5", str(images / "red.png"), str(images / "blue.png"),
                 str(images / "greenish.png"))
    records = jsonl(result)
    assert records["red"]["deal_position"] == "above"
    assert records["blue"]["deal"] == "no typical price for water"
    assert records["greenish"]["deal"] is None
    assert "`tagteller prices set --domain sea LABEL LOW HIGH`" in result.stderr


def test_acceptance_margin_orders_by_score_to_threshold_ratio():
    assert acceptance_margin(30, 100) > acceptance_margin(0.5, 1) > 0 > acceptance_margin(2, 1)
    assert acceptance_margin(-12, -10) > 0 > acceptance_margin(-8, -10)  # a negative (energy-like) threshold
    assert acceptance_margin(float("nan"), 1) == -math.inf


def _answer(domain: str, score: float | None, threshold: float | None, top: float = 0.9) -> ScanResult:
    return ScanResult(source="x.jpg", predictions=[Prediction("a", top)], domain=domain, ood_score=score,
                      ood_threshold=threshold)


def test_ranking_compares_gate_probabilities_across_domains():
    # shoes is far surer (0.004) than apparel (0.30), though apparel's score sits further under
    # its own threshold in ratio terms (0.30/0.60 = 0.5 against 0.004/0.005 = 0.8)
    shoes, apparel = _answer("shoes", 0.004, 0.005), _answer("apparel", 0.30, 0.60)
    assert [r.domain for r in rank_answers([apparel, shoes])] == ["shoes", "apparel"]
    # when both reject, the closest is the lower probability too
    far, near = _answer("books", 0.99, 0.05), _answer("products", 0.70, 0.65)
    assert [r.domain for r in rank_answers([far, near])] == ["products", "books"]
    # accepted before unscored before rejected before errors, whatever the numbers
    failed = ScanResult(source="x.jpg", error="broken", domain="trousers")
    order = rank_answers([failed, near, _answer("plain", None, None, top=0.99), apparel])
    assert [r.domain for r in order] == ["apparel", "plain", "products", "trousers"]


def test_ranking_falls_back_to_margins_when_a_score_is_not_a_probability():
    # a distance score (threshold 40) cannot be compared with a probability: margins decide
    distance, gate = _answer("custom", 10.0, 40.0), _answer("shoes", 0.004, 0.005)
    assert [r.domain for r in rank_answers([gate, distance])] == ["custom", "shoes"]


# -- the HTTP API --------------------------------------------------------------------------------------

@pytest.fixture
def client(models, monkeypatch, tmp_path):
    pytest.importorskip("fastapi", reason="needs the [serve] extra (fastapi)")
    pytest.importorskip("python_multipart", reason="needs the [serve] extra (python-multipart)")
    from fastapi.testclient import TestClient

    from tagteller.serve.app import create_app

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    register(models, monkeypatch, extra=(
        Domain(name="cracked", description="broken", labels=("a", "b"), model_path=broken),))
    with TestClient(create_app(engine=Engine(intra_threads=1), max_upload_bytes=64 * 1024)) as test_client:
        yield test_client


def png(colour) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, format="PNG")
    return buf.getvalue()


def api_scan(client, colour, domain="fruit", **params):
    response = client.post("/v1/scan", params={"domain": domain, **params}, content=png(colour),
                           headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    return response.json()


def test_api_unknown_answer_has_no_label_and_no_deal(client):
    prices.set_price("fruit", "blueberry", "3", "4", currency="EUR")
    body = api_scan(client, BLUE, price="3.50")
    assert body["status"] == "unknown" and body["label"] is None and body["sure"] is None
    assert body["top"][0]["label"] == "blueberry" and body["ood_score"] > body["ood_threshold"] == THRESHOLD
    assert body["price"] == 3.5 and body["price_paid"] == "3.50"
    assert body["deal"] is None and body["typical_known"] is None and body["deal_position"] is None
    ok = api_scan(client, RED, price="3.50")
    assert ok["status"] == "ok" and ok["label"] == "apple" and ok["ood_score"] == 0.0
    assert ok["deal"] == "no typical price for apple"
    accepted = api_scan(client, BLUE, accept_unknown="true", price="3.50")
    assert accepted["status"] == "ok" and accepted["label"] == "blueberry" and accepted["sure"] is False
    assert accepted["deal"].startswith("if it is blueberry: ")


def test_api_any_domain(client):
    assert (api_scan(client, RED, "any")["domain"], api_scan(client, BLUE, "any")["label"]) == ("fruit", "water")
    purple = api_scan(client, BLUISH_PURPLE, "any")
    assert (purple["status"], purple["domain"]) == ("ok", "sea")
    assert [a["domain"] for a in purple["alternatives"]] == ["fruit"]  # the broken domain is left out
    unknown = api_scan(client, GREENISH, "any", price="2")
    assert (unknown["status"], unknown["domain"], unknown["label"], unknown["deal"]) == ("unknown", "sea", None, None)
    closest = api_scan(client, GREENISH, "any", accept_unknown="true")
    assert (closest["status"], closest["label"]) == ("ok", "kelp")
    rows = {row["name"]: row for row in client.get("/v1/domains").json()["domains"]}
    assert rows["fruit"]["open_set"] is True and rows["cracked"]["has_model"] is False


def test_api_feedback_still_files_an_unknown_photo(client):
    image = png(BLUE)
    scanned = client.post("/v1/scan", params={"domain": "fruit"}, content=image,
                          headers={"content-type": "image/png"}).json()
    assert scanned["status"] == "unknown"
    filed = client.post("/v1/feedback", params={"domain": scanned["domain"], "label": "blueberry"}, content=image,
                        headers={"content-type": "image/png"})
    assert filed.status_code == 200, filed.text
    assert filed.json()["status"] == "filed" and filed.json()["label"] == "blueberry"


def test_api_any_without_a_usable_model_is_503(client, monkeypatch):
    monkeypatch.setenv("TAGTELLER_PLUGINS", "")
    plugins.reset()
    plugins.register_plugin(DomainsPlugin(Domain(name="untrained", description="x", labels=("a", "b"))), "only")
    response = client.post("/v1/scan", params={"domain": "any"}, content=png(RED), headers={"content-type": "image/png"})
    assert response.status_code == 503 and "no domain has a usable model" in response.json()["error"]


def test_page_offers_any_and_says_unknown(client):
    script = client.get("/static/app.js").text
    assert 'const ANY_DOMAIN = "any"' in script
    assert 'record.status !== "unknown"' in script and "Not like anything" in script
