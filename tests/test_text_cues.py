"""Text cues (``scan --read-text``): matching, the record fields in every format, and end to end
with the ``ocr`` extra on generated photos carrying rendered brand words (skipped without it).

The image model is a colour model (red -> adidas, green -> nike, blue -> puma), so what the image
alone answers is known; the text drawn on the photo says otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont
from typer.testing import CliRunner

from tagteller import Domain, plugins
from tagteller.cli import build_app
from tagteller.engine import Prediction, ScanResult
from tagteller.output import make_writer, result_record
from tagteller.text_cues import (
    INSTALL_HINT,
    SecondOpinion,
    TextCue,
    TextCues,
    TextReading,
    match_cues,
    normalise_text,
)
from tests.builders import DomainsPlugin, colour_model

BRANDS = ("adidas", "nike", "puma")
CUES = TextCues((TextCue("adidas", ("adidas",)), TextCue("nike", ("nike",)), TextCue("puma", ("puma",))))


def run(*args: str):
    return CliRunner().invoke(build_app(), list(args))


# -- matching (no OCR needed) -------------------------------------------------------------------
def test_normalise_folds_case_accents_spaces_and_signs():
    assert normalise_text("Nike  Sportswear®") == "nikesportswear"
    assert normalise_text("PUMÁ-1948") == "puma1948"
    assert normalise_text("三 ") == ""


@pytest.mark.parametrize(("lines", "label", "similarity"), [
    (["NIKE SPORTSWEAR"], "nike", 1.0),
    (["JUST DO IT", "NIKESPORTSWEAR"], "nike", 1.0),  # OCR dropped the spaces
    (["Lnike", "1971"], "nike", 1.0),
    (["adldas"], "adidas", 5 / 6),  # one letter misread
    (["ADIDASORIGINALS"], "adidas", 1.0),
    (["adid"], "adidas", 0.8),  # a line shorter than the word: the rest was out of the picture
    (["FOREVER FASTER PUMA"], "puma", 1.0),
])
def test_cue_matches_exact_and_fuzzy(lines, label, similarity):
    match = match_cues(lines, CUES)
    assert match is not None and match.label == label
    assert match.similarity == pytest.approx(similarity)


@pytest.mark.parametrize("lines", [[], [""], ["三"], ["1978"], ["SALE 50%"], ["nk"], ["converse all star"],
                                   ["NIKF"], ["bike"], ["uma"], ["human"], ["pump"], ["ad"], ["odidos"]])
def test_text_without_a_cue_matches_nothing(lines):
    assert match_cues(lines, CUES) is None


def test_exact_only_cues_refuse_a_misread_word_and_short_words_can_be_fuzzy_if_asked():
    exact = TextCues(CUES.cues, min_similarity=1.0)
    assert match_cues(["adldas"], exact) is None
    assert match_cues(["NIKE"], exact).label == "nike"
    loose = TextCues(CUES.cues, fuzzy_min_length=4)
    assert match_cues(["NIKF"], loose).label == "nike" and match_cues(["bike"], loose).label == "nike"


def test_two_brands_read_equally_well_is_ambiguous_but_a_better_read_wins():
    assert match_cues(["NIKE x PUMA"], CUES) is None
    assert match_cues(["ADIDAS", "NIKE"], CUES) is None  # both exact, on two lines
    match = match_cues(["ADLDAS", "NIKE"], CUES)  # nike exact, adidas only fuzzy
    assert match is not None and match.label == "nike"


def test_cues_are_checked_when_declared():
    with pytest.raises(ValueError, match="under 3 letters"):
        TextCue("nike", ("nk",))
    with pytest.raises(ValueError, match="one TextCue per label"):
        TextCues((TextCue("nike", ("nike",)), TextCue("nike", ("swoosh",))))
    with pytest.raises(ValueError, match="labels the domain does not have: reebok"):
        Domain(name="brandz", description="x", labels=BRANDS, text_cues=TextCues((TextCue("reebok", ("reebok",)),)))
    assert TextCue("nike", "nike").words == ("nike",)


# -- the record in every format ------------------------------------------------------------------
def image_result(label="adidas", unknown=False) -> ScanResult:
    others = [b for b in BRANDS if b != label]
    return ScanResult(source="a.jpg", domain="brands", model_version="1", unknown=unknown,
                      predictions=[Prediction(label, 0.8), Prediction(others[0], 0.15), Prediction(others[1], 0.05)])


class FixedReader:
    """A reader that 'reads' given lines (the OCR itself is tested below, with the extra)."""

    def __init__(self, *lines: str) -> None:
        self.lines = lines
        self.calls = 0

    def read(self, source):
        self.calls += 1
        return TextReading(self.lines)


def test_a_cue_overrides_the_image_answer_and_the_record_says_so():
    result = image_result("adidas")
    assert SecondOpinion({"brands": CUES}, FixedReader("NIKE", "SPORTSWEAR")).apply(result, "a.jpg") is None
    record = result_record(result, 0.5)
    assert record["label"] == "nike" and record["confidence"] is None and record["sure"] is True
    assert record["top"][0] == {"label": "adidas", "probability": 0.8}  # the image model's own opinion
    assert record["text"] == "NIKE SPORTSWEAR"
    assert record["text_match"] == {"label": "nike", "word": "nike", "read": "nike", "similarity": 1.0,
                                    "overrode": True}


def test_a_cue_agreeing_with_the_image_or_not_allowed_to_override_only_records():
    agreeing = image_result("nike")
    SecondOpinion({"brands": CUES}, FixedReader("NIKE")).apply(agreeing, "a.jpg")
    record = result_record(agreeing, 0.5)
    assert (record["label"], record["confidence"], record["text_match"]["overrode"]) == ("nike", 0.8, False)

    advisory = TextCues((TextCue("nike", ("nike",), overrides=False),))
    result = image_result("adidas")
    SecondOpinion({"brands": advisory}, FixedReader("NIKE")).apply(result, "a.jpg")
    record = result_record(result, 0.5)
    assert record["label"] == "adidas" and record["text_match"]["label"] == "nike"
    assert record["text_match"]["overrode"] is False


def test_unknown_answers_and_other_domains_are_not_overridden():
    reader = FixedReader("NIKE")
    unknown = image_result("adidas", unknown=True)
    SecondOpinion({"brands": CUES}, reader).apply(unknown, "a.jpg")
    record = result_record(unknown, 0.5)
    assert record["status"] == "unknown" and record["label"] is None and record["text"] == "NIKE"
    other = ScanResult(source="b.jpg", domain="books", predictions=[Prediction("novel", 0.9)])
    SecondOpinion({"brands": CUES}, reader).apply(other, "b.jpg")
    failed = ScanResult(source="c.jpg", domain="brands", error="cannot decode image")
    SecondOpinion({"brands": CUES}, reader).apply(failed, "c.jpg")
    assert reader.calls == 1  # read once: only the answer of a domain with cues
    assert other.text is None and failed.text is None


def test_records_carry_text_fields_null_when_not_read_in_every_format():
    plain = result_record(image_result("puma"), 0.5)
    assert plain["text"] is None and plain["text_match"] is None
    read = image_result("adidas")
    SecondOpinion({"brands": CUES}, FixedReader("NIKE")).apply(read, "a.jpg")
    records = [plain, result_record(read, 0.5)]

    out = io.StringIO()
    writer = make_writer("csv", out)
    for record in records:
        writer.write(record)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert (rows[0]["text"], rows[0]["text_match"]) == ("", "")
    assert (rows[1]["label"], rows[1]["text"], rows[1]["text_match"]) == ("nike", "NIKE", "nike:nike:1.0000:overrode")

    out = io.StringIO()
    writer = make_writer("table", out)
    for record in records:
        writer.write(record)
    lines = out.getvalue().splitlines()
    assert "read:" not in lines[1]
    assert "nike" in lines[2] and "text: nike" in lines[2] and "adidas 80%" in lines[2] and "read: NIKE" in lines[2]

    for fmt in ("json", "jsonl"):
        out = io.StringIO()
        writer = make_writer(fmt, out)
        for record in records:
            writer.write(record)
        writer.close()
        text = out.getvalue()
        parsed = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
        assert [p["text"] for p in parsed] == [None, "NIKE"]
        assert parsed[0]["text_match"] is None and parsed[1]["text_match"]["overrode"] is True


# -- without the extra ---------------------------------------------------------------------------
@pytest.fixture
def brands_domain(tmp_path):
    """Domain ``brands`` with text cues; its model answers by colour: red adidas, green nike, blue puma."""
    model = colour_model(tmp_path / "brands.onnx", domain="brands", labels=BRANDS)
    plugins.register_plugin(DomainsPlugin(Domain(name="brands", description="test brands", labels=BRANDS,
                                                 model_path=model, text_cues=CUES)), "brands-test")
    return model


def red_photo(path: Path, word: str | None, size=(360, 160)) -> Path:
    """A red photo (the colour model says adidas), with ``word`` in large white letters."""
    im = Image.new("RGB", size, (200, 20, 20))
    if word:
        draw = ImageDraw.Draw(im)
        font = ImageFont.load_default(size=64)
        draw.text((size[0] // 2, size[1] // 2), word, fill=(255, 255, 255), font=font, anchor="mm")
    im.save(path, quality=95)
    return path


def test_read_text_without_the_extra_fails_with_one_line_naming_it(brands_domain, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # as if it were not installed
    photo = red_photo(tmp_path / "plain.jpg", None)
    result = run("scan", "--domain", "brands", "--read-text", str(photo))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and INSTALL_HINT in lines[0] and "'ocr' extra" in lines[0], result.output
    # The default scan path never needs it, and says nothing about it.
    result = run("scan", "--domain", "brands", "-f", "jsonl", str(photo))
    assert result.exit_code == 0 and json.loads(result.output)["text"] is None


def test_a_domain_reading_by_default_goes_on_without_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    model = colour_model(tmp_path / "auto.onnx", domain="auto", labels=BRANDS)
    cues = TextCues(CUES.cues, read_by_default=True)
    plugins.register_plugin(DomainsPlugin(Domain(name="auto", description="x", labels=BRANDS, model_path=model,
                                                 text_cues=cues)), "auto-test")
    photo = str(red_photo(tmp_path / "a.jpg", "NIKE"))
    result = run("scan", "--domain", "auto", "-f", "jsonl", photo)
    assert result.exit_code == 0 and "not reading text" in result.output and "'ocr' extra" in result.output
    assert json.loads(result.output.splitlines()[-1])["label"] == "adidas"
    result = run("scan", "--domain", "auto", "--no-read-text", "-f", "jsonl", photo)
    assert result.exit_code == 0 and "not reading text" not in result.output


def test_serve_read_text_without_the_extra_is_a_400_naming_it(brands_domain, tmp_path, monkeypatch):
    pytest.importorskip("fastapi", reason="needs the [serve] extra")
    pytest.importorskip("python_multipart", reason="needs the [serve] extra")
    from fastapi.testclient import TestClient

    from tagteller.serve.app import create_app

    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    data = red_photo(tmp_path / "nike.jpg", "NIKE").read_bytes()
    with TestClient(create_app()) as client:
        files = {"file": ("nike.jpg", data, "image/jpeg")}
        response = client.post("/v1/scan", params={"domain": "brands", "read_text": "true"}, files=files)
        assert response.status_code == 400 and INSTALL_HINT in response.text
        body = client.post("/v1/scan", params={"domain": "brands"}, files=files).json()
        assert body["label"] == "adidas" and body["text"] is None and body["text_match"] is None


def test_read_text_on_a_domain_without_cues_says_so(tmp_path):
    model = colour_model(tmp_path / "plain.onnx", domain="plain", labels=BRANDS)
    plugins.register_plugin(DomainsPlugin(Domain(name="plain", description="x", labels=BRANDS, model_path=model)), "p")
    pytest.importorskip("rapidocr_onnxruntime", reason="needs the [ocr] extra")
    result = run("scan", "--domain", "plain", "--read-text", "-f", "jsonl", str(red_photo(tmp_path / "a.jpg", "NIKE")))
    assert result.exit_code == 0 and "no domain of this scan declares text cues" in result.output


def test_default_scan_never_imports_the_ocr_package(brands_domain, tmp_path):
    probe = (
        "import sys\n"
        "photo, model = sys.argv[1:3]\n"
        "sys.argv = ['tagteller', 'scan', '--domain', 'brands', photo, '-f', 'jsonl']\n"
        "from tests.builders import DomainsPlugin\n"
        "from tagteller import Domain, plugins\n"
        "from tests.test_text_cues import BRANDS, CUES\n"
        "plugins.register_plugin(DomainsPlugin(Domain(name='brands', description='x', labels=BRANDS,\n"
        "    model_path=model, text_cues=CUES)), 'brands-test')\n"
        "try:\n"
        "    from tagteller.cli import main; main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('rapidocr_onnxruntime', 'cv2', 'shapely', 'pyclipper'))\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, str(red_photo(tmp_path / "a.jpg", "NIKE")), str(brands_domain)],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent,
                          env=dict(os.environ, TAGTELLER_HOME=str(tmp_path / "h")))
    assert '"label": "adidas"' in proc.stdout, proc.stderr
    assert proc.stderr.rstrip().endswith("HEAVY="), proc.stderr


# -- with the extra: real OCR on rendered words --------------------------------------------------
@pytest.fixture
def ocr():
    return pytest.importorskip("rapidocr_onnxruntime", reason="needs the [ocr] extra")


def test_reader_reads_a_rendered_brand_word(ocr, tmp_path):
    from tagteller.text_cues import TextReader

    reading = TextReader().read(red_photo(tmp_path / "nike.jpg", "NIKE"))
    assert "nike" in normalise_text(reading.text), reading
    assert TextReader().read(red_photo(tmp_path / "plain.jpg", None)).lines == ()


def test_scan_read_text_overrides_the_image_and_leaves_a_plain_photo_alone(ocr, brands_domain, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    red_photo(folder / "1-nike.jpg", "NIKE")
    red_photo(folder / "2-plain.jpg", None)
    red_photo(folder / "3-adidas.jpg", "adidas")
    (folder / "4-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")

    result = run("scan", "--domain", "brands", "--read-text", "-f", "jsonl", str(folder))
    assert result.exit_code == 1  # the broken file; the rest carried on
    records = {Path(r["file"]).name: r for r in map(json.loads, [line for line in result.output.splitlines() if line.startswith("{")])}
    nike = records["1-nike.jpg"]
    assert nike["label"] == "nike" and nike["text_match"]["overrode"] is True and nike["top"][0]["label"] == "adidas"
    assert "nike" in normalise_text(nike["text"])
    plain = records["2-plain.jpg"]
    assert (plain["label"], plain["text"], plain["text_match"]) == ("adidas", "", None)
    agreeing = records["3-adidas.jpg"]
    assert agreeing["label"] == "adidas" and agreeing["text_match"]["overrode"] is False
    assert records["4-broken.jpg"]["status"] == "error" and records["4-broken.jpg"]["text"] is None

    result = run("scan", "--domain", "brands", "-f", "jsonl", str(folder / "1-nike.jpg"))
    record = json.loads(result.output)
    assert record["label"] == "adidas" and record["text"] is None  # no --read-text: image only


def test_serve_reads_text_when_asked(ocr, brands_domain, tmp_path):
    pytest.importorskip("fastapi", reason="needs the [serve] extra")
    pytest.importorskip("python_multipart", reason="needs the [serve] extra")
    from fastapi.testclient import TestClient

    from tagteller.serve.app import create_app

    data = red_photo(tmp_path / "nike.jpg", "NIKE").read_bytes()
    with TestClient(create_app()) as client:
        files = {"file": ("nike.jpg", data, "image/jpeg")}
        body = client.post("/v1/scan", params={"domain": "brands", "read_text": "true"}, files=files).json()
        assert body["label"] == "nike" and body["text_match"]["overrode"] is True
        assert body["timing_ms"]["text_reading"] > 0
        body = client.post("/v1/scan", params={"domain": "brands"}, files=files).json()
        assert body["label"] == "adidas" and body["text"] is None


def test_ocr_cost_benchmark_runs_and_records_its_figures(ocr, tmp_path):
    """The benchmark on tiny inputs (``--quick``): it finishes and records both sides per photo set
    (its figures are not checked for speed: not a timed test)."""
    repo = Path(__file__).resolve().parent.parent
    results = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "ocr_cost.py"), "--quick", "--cache",
                           str(tmp_path / "cache"), "--results", str(results)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    section = results.read_text()
    assert "### Text reading (OCR) cost per photo" in section and "- command: `" in section
    figures = json.loads(section.split("<!-- figures: ")[1].split(" -->")[0])
    for name in ("dataset", "phone"):
        assert figures[name]["photos"] >= 2 and figures[name]["with_text_ms"] > figures[name]["image_ms"] > 0
