"""One scan result path: per-step timings on results (``ScanResult.timing_ms``), the one
domain/model mismatch check (:meth:`tagteller.domain.Domain.check_model`) used by the CLI, the
server and the Ray path, and the one maker of deal fields (:class:`tagteller.prices.DealCheck`)
giving the CLI and the server the same fields."""

from __future__ import annotations

import io
import json
import re
import time

import pytest
from PIL import Image
from typer.testing import CliRunner

from tagteller import Domain, plugins, prices
from tagteller.cli import build_app
from tagteller.engine import DECODE, INFERENCE, TAUGHT_LABELS, TEXT_READING, Engine, ScanResult
from tagteller.errors import DomainMismatchError
from tagteller.output import CsvWriter, result_record
from tagteller.text_cues import SecondOpinion, TextCue, TextCues, TextReading
from tests.builders import DomainsPlugin, colour_model, solid_image
from tests.test_teach import paints  # noqa: F401 - the fixture

STEPS = {DECODE, INFERENCE, TAUGHT_LABELS, TEXT_READING}


def run(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def png_bytes(colour=(250, 5, 5), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def assert_steps(result: ScanResult, expected: set[str]) -> None:
    assert set(result.timing_ms) == expected, result.timing_ms
    assert all(ms >= 0 for ms in result.timing_ms.values()), result.timing_ms


@pytest.fixture
def colours(tmp_path):
    """Domain ``colours`` with a colour model; ``paint``: a model trained for another domain."""
    model = colour_model(tmp_path / "colours.onnx")
    plugins.register_plugin(DomainsPlugin(
        Domain(name="colours", description="Colour", labels=("red", "green", "blue"), model_path=model),
    ), "scan-path-colours")
    return {"model": model, "paint": colour_model(tmp_path / "paint.onnx", domain="paint")}


# -- timings ---------------------------------------------------------------------------------

def test_one_image_records_decode_and_inference_within_the_calls_time(colours):
    engine = Engine(intra_threads=1)
    model = engine.load(colours["model"])
    engine.classify(model, png_bytes())  # warm: the first run of a session is slower
    started = time.perf_counter()
    result = engine.classify(model, png_bytes())
    wall_ms = (time.perf_counter() - started) * 1000
    assert result.ok and result.top.label == "red"
    assert_steps(result, {DECODE, INFERENCE})
    assert result.timing_ms[DECODE] > 0 and result.timing_ms[INFERENCE] > 0
    assert sum(result.timing_ms.values()) <= wall_ms


def test_a_scan_shares_each_batch_run_and_times_failed_decodes_too(colours):
    engine = Engine(intra_threads=1, decode_workers=1)  # one worker: the steps run one after another
    model = engine.load(colours["model"])
    sources = [png_bytes((250, 5, 5)), b"not an image", png_bytes((5, 250, 5)), png_bytes((5, 5, 250), (300, 200))]
    try:
        started = time.perf_counter()
        results = list(engine.scan(model, sources, batch_size=4))
        wall_ms = (time.perf_counter() - started) * 1000
    finally:
        engine.close()
    ok = [r for r in results if r.ok]
    assert len(ok) == 3 and not results[1].ok
    assert_steps(results[1], {DECODE})  # it never reached the model
    for result in ok:
        assert_steps(result, {DECODE, INFERENCE})
    # one model run for the three decoded images, counted in equal shares
    assert len({r.timing_ms[INFERENCE] for r in ok}) == 1
    assert sum(ms for r in results for ms in r.timing_ms.values()) <= wall_ms


def test_scans_over_every_domain_add_up_each_models_share(colours, tmp_path):
    engine = Engine(intra_threads=1, decode_workers=1)
    models = [engine.load(colours["model"]), engine.load(colour_model(tmp_path / "p.onnx", domain="paint"))]
    started = time.perf_counter()
    result = engine.classify_any(models, png_bytes())
    wall_ms = (time.perf_counter() - started) * 1000
    assert result.ok and len(result.alternatives) == 1
    assert_steps(result, {DECODE, INFERENCE})
    assert sum(result.timing_ms.values()) <= wall_ms


def test_taught_label_scoring_is_its_own_step(paints):  # noqa: F811 - the fixture
    assert run("teach", "--domain", "paints", "yellow", *paints["yellow"][:5]).exit_code == 0
    engine = Engine(intra_threads=1, decode_workers=1)
    model = engine.load(paints["model"])
    started = time.perf_counter()
    result = engine.classify(model, paints["yellow"][5])
    wall_ms = (time.perf_counter() - started) * 1000
    assert result.top.label == "yellow"
    assert_steps(result, {DECODE, INFERENCE, TAUGHT_LABELS})
    assert sum(result.timing_ms.values()) <= wall_ms


class SlowReader:
    """Reads a fixed word, taking ``seconds`` to do it."""

    def __init__(self, word: str, seconds: float) -> None:
        self.word, self.seconds = word, seconds

    def read(self, _source):
        time.sleep(self.seconds)
        return TextReading((self.word,))


def test_text_reading_is_timed_where_it_runs(colours):
    engine = Engine(intra_threads=1)
    result = engine.classify(engine.load(colours["model"]), png_bytes())
    cues = TextCues((TextCue("green", ("lime",)),))
    started = time.perf_counter()
    assert SecondOpinion({"colours": cues}, SlowReader("LIME", 0.02)).apply(result, b"") is None
    wall_ms = (time.perf_counter() - started) * 1000
    assert_steps(result, {DECODE, INFERENCE, TEXT_READING})
    assert 20 <= result.timing_ms[TEXT_READING] <= wall_ms
    assert result_record(result)["label"] == "green"  # the cue answered


def test_json_records_and_the_summary_line_carry_the_steps_csv_keeps_its_columns(colours, tmp_path):
    images = [solid_image(tmp_path / f"{name}.png", colour) for name, colour in
              (("red", (250, 5, 5)), ("green", (5, 250, 5)))]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "r.jsonl"
    result = run("scan", "-d", "colours", "-o", out, *images, tmp_path / "broken.jpg")
    assert result.exit_code == 1
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for record in records:
        steps = record["timing_ms"]
        assert set(steps) == ({DECODE} if record["status"] == "error" else {DECODE, INFERENCE}), record
        assert all(ms >= 0 for ms in steps.values())
    line = next(line for line in result.stderr.splitlines() if line.startswith(f"{out}: "))
    per_image = re.search(r"per image: decode ([\d.]+) ms, inference ([\d.]+) ms$", line)
    assert per_image, line
    decode_mean = sum(r["timing_ms"][DECODE] for r in records) / len(records)
    assert float(per_image.group(1)) == pytest.approx(decode_mean, abs=0.051)
    csv_out = run("scan", "-d", "colours", "-f", "csv", *images)
    assert csv_out.stdout.splitlines()[0] == ",".join(CsvWriter.COLUMNS)  # no timing column


def test_the_server_reports_the_engines_steps(colours):
    pytest.importorskip("fastapi", reason="needs the [serve] extra")
    from fastapi.testclient import TestClient

    from tagteller.serve.app import create_app

    with TestClient(create_app(engine=Engine(intra_threads=1))) as client:
        body = client.post("/v1/scan", params={"domain": "colours"}, content=png_bytes(),
                           headers={"content-type": "image/png"}).json()
    timing = body["timing_ms"]
    assert set(timing) == {DECODE, INFERENCE, "decode_and_inference", "waiting", "total"}
    assert timing["decode_and_inference"] == pytest.approx(timing[DECODE] + timing[INFERENCE], abs=0.002)
    assert timing["total"] >= timing["decode_and_inference"] + timing["waiting"] - 0.002


# -- one mismatch check ----------------------------------------------------------------------

@pytest.fixture
def checks(monkeypatch):
    """Every call of Domain.check_model, as (domain, model's domain); the check still runs."""
    calls = []
    original = Domain.check_model

    def spy(self, model_domain, where):
        calls.append((self.name, model_domain))
        return original(self, model_domain, where)

    monkeypatch.setattr(Domain, "check_model", spy)
    return calls


def test_the_check_refuses_a_model_of_another_domain(colours):
    domain = plugins.get_domain("colours")
    domain.check_model("colours", colours["model"])  # its own: fine
    with pytest.raises(DomainMismatchError) as caught:
        domain.check_model("paint", colours["paint"])
    assert str(caught.value) == f"{colours['paint']}: this model is for domain 'paint', not 'colours'"
    assert (caught.value.model_domain, caught.value.domain) == ("paint", "colours")


def test_the_cli_scan_uses_the_check(colours, checks, tmp_path):
    image = solid_image(tmp_path / "red.png", (250, 5, 5))
    result = run("scan", "-d", "colours", "--model", colours["paint"], image)
    assert result.exit_code == 2 and "is for domain 'paint', not 'colours'" in result.stderr
    assert checks == [("colours", "paint")]
    assert run("scan", "-d", "colours", image).exit_code == 0
    assert checks[-1] == ("colours", "colours")


def test_the_ray_path_uses_the_check(colours, checks, tmp_path):
    from tagteller.scale import missing_modules

    if missing_modules():
        pytest.skip("needs the [ray] extra")
    image = solid_image(tmp_path / "red.png", (250, 5, 5))
    result = run("scan", "--engine", "ray", "-d", "colours", "--model", colours["paint"], "-o", tmp_path / "out",
                 image)
    assert result.exit_code == 2 and "is for domain 'paint', not 'colours'" in result.stderr
    assert checks == [("colours", "paint")]
    assert not (tmp_path / "out").exists()  # refused before any job started


def test_the_server_uses_the_check(colours, checks):
    pytest.importorskip("fastapi", reason="needs the [serve] extra")
    from fastapi.testclient import TestClient

    from tagteller.serve.app import create_app

    plugins.register_plugin(DomainsPlugin(
        Domain(name="borrowed", description="another domain's model", labels=("red", "green", "blue"),
               model_path=colours["paint"]),
    ), "scan-path-borrowed")
    with TestClient(create_app(engine=Engine(intra_threads=1))) as client:
        response = client.post("/v1/scan", params={"domain": "borrowed"}, content=png_bytes(),
                               headers={"content-type": "image/png"})
    assert response.status_code == 503 and "trained for domain 'paint'" in response.json()["error"]
    assert ("borrowed", "paint") in checks


# -- one deal builder ------------------------------------------------------------------------

def test_cli_and_server_records_carry_the_same_deal_fields(colours, tmp_path):
    pytest.importorskip("fastapi", reason="needs the [serve] extra")
    from fastapi.testclient import TestClient

    from tagteller.serve.app import create_app

    prices.set_price("colours", "red", "60", "90")
    image = tmp_path / "red.png"
    image.write_bytes(png_bytes())
    cli = json.loads(run("scan", "-d", "colours", "--price", "12.50", "-f", "jsonl", image).stdout)
    with TestClient(create_app(engine=Engine(intra_threads=1))) as client:
        served = client.post("/v1/scan", params={"domain": "colours", "price": "12.50"}, content=png_bytes(),
                             headers={"content-type": "image/png"}).json()
    fields = {name: cli[name] for name in prices.DEAL_RECORD_FIELDS}
    assert fields == {name: served[name] for name in prices.DEAL_RECORD_FIELDS}
    assert fields["deal_position"] == "below" and fields["typical_known"] is True
    assert fields["deal"] == "typical 60-90 EUR, you pay 12.50: about 83% below"


def test_a_deal_check_without_a_price_is_all_null_and_unpriced_labels_are_collected(colours):
    assert prices.DealCheck(None).fields("colours", {"status": "ok", "label": "red"}) == \
        dict.fromkeys(prices.DEAL_RECORD_FIELDS)
    check = prices.DealCheck(prices.parse_amount("5"))
    fields = check.fields("colours", {"status": "ok", "label": "green", "sure": False})
    assert fields["typical_known"] is False and fields["deal"] == "no typical price for green"
    assert check.fields("colours", {"status": "unknown", "label": None})["deal"] is None
    assert check.unpriced == {"colours": ["green"]}
