"""The feedback inbox: filing, de-duplication, label validation, the ``feedback`` commands,
``scan --correct`` end to end, and ``feedback_samples`` as training data."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import tagteller
from tagteller import feedback, plugins
from tagteller.cli import build_app
from tagteller.datasets import Dataset, Sample, stratified_split
from tagteller.errors import ImageError, InvalidNameError
from tagteller.feedback import LabelRefusedError, feedback_samples, feedback_stats, file_image
from tagteller.imaging import prepare
from tagteller.paths import feedback_dir
from tagteller.preprocessing import Preprocessing
from tests.builders import RGB_LABELS, solid_image, register_thrift_domains


@pytest.fixture
def domains(tmp_path):
    return register_thrift_domains(tmp_path)


def png_bytes(colour=(200, 30, 30), size=(20, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(colour=(30, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def inbox_files(domain: str) -> list[Path]:
    root = feedback_dir(domain)
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def run(*args):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


# -- filing and de-duplication ---------------------------------------------------------------

def test_filing_is_content_addressed_and_deduplicated(domains):
    data = png_bytes()
    digest = hashlib.sha256(data).hexdigest()
    first = file_image("thrift-colours", data, "red")
    assert first.status == "filed" and first.label == "red" and first.sha256 == digest
    assert first.path == feedback_dir("thrift-colours") / "red" / f"{digest}.png"
    assert first.path.read_bytes() == data
    assert first.message == "filed as 'red' in the thrift-colours feedback inbox"

    again = file_image("thrift-colours", data, "red")
    assert again.status == "already filed" and again.path == first.path
    assert again.message.startswith("already filed")
    assert inbox_files("thrift-colours") == [Path("red") / f"{digest}.png"]

    jpeg = file_image(plugins.get_domain("thrift-colours"), jpeg_bytes(), "green")
    assert jpeg.path.suffix == ".jpg" and jpeg.status == "filed"
    assert len(inbox_files("thrift-colours")) == 2


def test_filing_the_same_photo_under_another_label_moves_it(domains):
    data = png_bytes()
    file_image("thrift-colours", data, "red")
    moved = file_image("thrift-colours", data, "blue")
    assert moved.status == "relabelled" and moved.previous_label == "red"
    assert "moved from 'red' to 'blue'" in moved.message
    assert inbox_files("thrift-colours") == [Path("blue") / f"{moved.sha256}.png"]
    assert [s.label for s in feedback_samples("thrift-colours")] == ["blue"]


def test_no_temp_files_are_left_behind(domains):
    for i in range(3):
        file_image("thrift-colours", png_bytes((i * 40, 0, 0)), "red")
    names = [p.name for p in (feedback_dir("thrift-colours") / "red").iterdir()]
    assert len(names) == 3 and not [n for n in names if n.startswith(".")]


# -- label validation ------------------------------------------------------------------------

def test_unknown_labels_are_refused(domains):
    with pytest.raises(LabelRefusedError, match="pass --new-label"):
        file_image("thrift-colours", png_bytes(), "purple")
    with pytest.raises(LabelRefusedError, match="does not accept new labels"):
        file_image("thrift-fixed", png_bytes(), "horse")
    with pytest.raises(LabelRefusedError, match="does not accept new labels"):
        file_image("thrift-fixed", png_bytes(), "horse", new_label=True)
    assert inbox_files("thrift-colours") == [] and inbox_files("thrift-fixed") == []
    assert file_image("thrift-fixed", png_bytes(), "cat", new_label=True).status == "filed"  # known: fine


def test_a_new_label_needs_new_label_once(domains):
    filed = file_image("thrift-colours", png_bytes(), "purple", new_label=True)
    assert filed.status == "filed" and filed.path.parent.name == "purple"
    # from then on it is a known label of the inbox
    assert file_image("thrift-colours", png_bytes((1, 2, 3)), "purple").status == "filed"
    assert "purple" in feedback.known_labels("thrift-colours")
    with pytest.raises(LabelRefusedError, match="only in letter case"):
        file_image("thrift-colours", png_bytes((9, 9, 9)), "Purple", new_label=True)
    with pytest.raises(LabelRefusedError, match="only in letter case"):
        file_image("thrift-colours", png_bytes((9, 9, 9)), "RED", new_label=True)


@pytest.mark.parametrize("label", ["../red", "red/../../x", "..", ".", "a\\b", "", " red", "red ", "/etc",
                                   "x\x00y", "_hidden", "a" * 65])
def test_path_like_and_malformed_labels_are_refused(domains, tmp_path, label):
    with pytest.raises(InvalidNameError):
        file_image("thrift-colours", png_bytes(), label, new_label=True)
    assert inbox_files("thrift-colours") == []
    assert not (feedback_dir("thrift-colours").parent / "x").exists()


def test_unknown_domain_is_refused():
    with pytest.raises(tagteller.errors.UnknownDomainError):
        file_image("no-such-domain", png_bytes(), "red")


# -- images are verified before filing -------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty data"),
        (b"hello, this is text", "not a recognised image format"),
        # truncated: the header reads, the pixels do not
        (png_bytes()[:60], "cannot decode image: image file is truncated"),
        (jpeg_bytes()[: jpeg_bytes().index(b"\xff\xda") + 20], "cannot decode image: image file is truncated"),
    ],
)
def test_undecodable_images_are_refused(domains, data, reason):
    with pytest.raises(ImageError, match=reason):
        file_image("thrift-colours", data, "red")
    assert inbox_files("thrift-colours") == []


def test_formats_training_cannot_read_are_refused(domains):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="PPM")
    with pytest.raises(ImageError, match="not a recognised image format|PPM images are not filed"):
        file_image("thrift-colours", buf.getvalue(), "red")


# -- what training gets -----------------------------------------------------------------------

def test_feedback_samples_are_training_samples(domains):
    red_data, blue_data = png_bytes((230, 20, 20)), png_bytes((20, 20, 230))
    file_image("thrift-colours", red_data, "red")
    file_image("thrift-colours", blue_data, "blue")
    file_image("thrift-colours", jpeg_bytes((20, 230, 20)), "green")
    file_image("thrift-colours", png_bytes((120, 0, 200)), "purple", new_label=True)
    stray = feedback_dir("thrift-colours") / "red" / "my-own-photo.png"
    stray.write_bytes(red_data)  # not filed by tagteller: ignored, and reported by stats

    samples = feedback_samples("thrift-colours")
    assert all(isinstance(s, Sample) for s in samples)
    assert [s.label for s in samples] == ["blue", "green", "purple", "red"]
    red = next(s for s in samples if s.label == "red")
    assert red.key == f"feedback/red/{hashlib.sha256(red_data).hexdigest()}.png"
    assert red.path.read_bytes() == red_data and red.source == red.path
    arrays = [prepare(s.source, (8, 8), Preprocessing()) for s in samples]
    assert all(a.shape == (8, 8, 3) for a in arrays)
    assert arrays[-1][..., 0].mean() > 200  # the red photo decodes as red

    # the training side merges them into a dataset: new labels come after the declared ones
    dataset = Dataset(feedback_dir("thrift-colours"), RGB_LABELS + ("purple",), samples)
    assert dataset.counts() == {"red": 1, "green": 1, "blue": 1, "purple": 1}
    train, val = stratified_split(samples, 0.5, seed=1)
    assert sorted(s.key for s in train + val) == sorted(s.key for s in samples)
    assert feedback_samples("thrift-fixed") == []

    stats = feedback_stats("thrift-colours")
    assert stats["total"] == 4 and stats["labels"] == {"blue": 1, "green": 1, "purple": 1, "red": 1}
    assert stats["new_labels"] == ["purple"]
    assert stats["bytes"] == sum(s.path.stat().st_size for s in samples)
    assert stats["ignored_files"] == [str(stray)] and stats["last_filed"]


# -- the feedback commands -------------------------------------------------------------------

def test_feedback_add_list_stats(domains, tmp_path):
    one = solid_image(tmp_path / "one.png", (200, 0, 0))
    two = solid_image(tmp_path / "two.jpg", (0, 0, 200))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = run("feedback", "add", "--domain", "thrift-colours", one, two, bad, tmp_path / "gone.png", "red")
    assert result.exit_code == 1
    assert f"{one}: filed as 'red'" in result.stdout and f"{two}: filed as 'red'" in result.stdout
    assert f"error: {bad}: not a recognised image format" in result.stderr
    assert "gone.png: no such file or folder" in result.stderr and "2 image(s) not filed" in result.stderr

    result = run("feedback", "add", "-d", "thrift-colours", one, "red")
    assert result.exit_code == 0 and "already filed as 'red'" in result.stdout

    result = run("feedback", "add", "-d", "thrift-colours", one, "teal")
    assert result.exit_code == 2 and "pass --new-label" in result.stderr
    result = run("feedback", "add", "-d", "thrift-fixed", one, "teal", "--new-label")
    assert result.exit_code == 2 and "does not accept new labels" in result.stderr
    result = run("feedback", "add", "-d", "thrift-colours", one, "../teal", "--new-label")
    assert result.exit_code == 2 and "path separator" in result.stderr
    result = run("feedback", "add", "-d", "thrift-colours", two, "teal", "--new-label")
    assert result.exit_code == 0 and "moved from 'red' to 'teal'" in result.stdout

    listed = json.loads(run("feedback", "list", "--domain", "thrift-colours", "--json").stdout)
    assert [(i["label"], Path(i["path"]).suffix) for i in listed] == [("red", ".png"), ("teal", ".jpg")]
    assert listed[0]["sha256"] == hashlib.sha256(one.read_bytes()).hexdigest()
    text = run("feedback", "list", "-d", "thrift-colours", "--label", "teal").stdout
    assert "teal" in text and "red" not in text
    assert "no feedback filed for thrift-fixed" in run("feedback", "list", "-d", "thrift-fixed").stdout

    stats = json.loads(run("feedback", "stats", "--json").stdout)
    assert [(s["domain"], s["total"], s["labels"], s["new_labels"]) for s in stats] == [
        ("thrift-colours", 2, {"red": 1, "teal": 1}, ["teal"])]
    text = run("feedback", "stats", "-d", "thrift-colours").stdout
    assert "thrift-colours: 2 image(s); new labels: teal" in text


# -- scan --correct end to end ---------------------------------------------------------------

def test_scan_correct_files_every_scanned_image(domains, tmp_path):
    red = solid_image(tmp_path / "red.png", (250, 10, 10))
    grey = solid_image(tmp_path / "grey.jpg", (128, 128, 128))
    broken = tmp_path / "broken.png"
    broken.write_bytes(png_bytes()[:60])
    result = run("scan", "--domain", "thrift-colours", red, grey, broken, "--correct", "blue", "-f", "json")
    assert result.exit_code == 1
    records = json.loads(result.stdout)
    assert [r["status"] for r in records] == ["ok", "ok", "error"]
    assert f"{red}: filed as 'blue' in the thrift-colours feedback inbox" in result.stderr
    assert f"{grey}: filed as 'blue'" in result.stderr
    assert "broken.png" in result.stderr and "1 of 3 input(s) failed" in result.stderr
    filed = {s.path.read_bytes() for s in feedback_samples("thrift-colours")}
    assert filed == {red.read_bytes(), grey.read_bytes()}

    result = run("scan", "-d", "thrift-colours", red, "--correct", "blue")
    assert result.exit_code == 0 and "already filed as 'blue'" in result.stderr
    assert "red" in result.stdout.splitlines()[1]  # the scan result itself is still shown
    assert len(feedback_samples("thrift-colours")) == 2


def test_scan_correct_checks_the_label_before_scanning(domains, tmp_path):
    red = solid_image(tmp_path / "red.png", (250, 10, 10))
    result = run("scan", "-d", "thrift-colours", red, "--correct", "crimson")
    assert result.exit_code == 2 and "pass --new-label" in result.stderr and result.stdout == ""
    result = run("scan", "-d", "thrift-colours", red, "--new-label")
    assert result.exit_code == 2 and "--new-label goes with --correct" in result.stderr
    assert feedback_samples("thrift-colours") == []

    result = run("scan", "-d", "thrift-colours", red, "--correct", "crimson", "--new-label")
    assert result.exit_code == 0 and "filed as 'crimson'" in result.stderr
    assert [s.label for s in feedback_samples("thrift-colours")] == ["crimson"]

    # --model without --domain: the model's domain decides which inbox and labels apply
    result = run("scan", "--model", domains, red, "--correct", "green")
    assert result.exit_code == 0
    assert "moved from 'crimson' to 'green' in the thrift-colours feedback inbox" in result.stderr


def test_scan_shows_low_confidence_as_not_sure(domains, tmp_path):
    grey = solid_image(tmp_path / "grey.png", (128, 128, 128))
    nearly = solid_image(tmp_path / "nearly.png", (124, 120, 120))  # about 43% red
    result = run("scan", "-d", "thrift-colours", grey, nearly, "-f", "jsonl")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["sure"] for r in records] == [False, False]
    assert np.isclose(records[0]["confidence"], 1 / 3, atol=1e-4)
    table = run("scan", "-d", "thrift-colours", grey, nearly).stdout.splitlines()
    pct = round(records[1]["confidence"] * 100)
    assert "not sure: 33%" in table[1] and f"not sure: {pct}%" in table[2]


def test_inbox_folders_that_are_no_valid_label_are_said_not_silently_dropped(domains):
    """A folder made by hand, or filed before a label rule existed (a Windows device name, mixed
    scripts), is left out of training: stats says so, with the reason."""
    inbox = feedback_dir("thrift-colours")
    for name in ("CON", "n\u0456ke"):  # a device name; a Cyrillic i
        (inbox / name).mkdir(parents=True)
        (inbox / name / ("ab" * 32 + ".png")).write_bytes(b"x")
    stats = feedback_stats("thrift-colours")
    reasons = {Path(row["path"]).name: row["reason"] for row in stats["ignored_folders"]}
    assert set(reasons) == {"CON", "n\u0456ke"}
    assert "device name" in reasons["CON"] and "mixes Latin and Cyrillic" in reasons["n\u0456ke"]
    assert feedback_samples("thrift-colours") == []
    result = CliRunner().invoke(build_app(), ["feedback", "stats", "--domain", "thrift-colours"])
    assert result.exit_code == 0
    assert f"warning: {inbox / 'CON'}: training ignores this folder" in result.stderr
