"""``scan -o``: the output path is checked before scanning, its extension gives the format, ``-``
is stdout, a summary line goes to stderr; the table keeps whole names and aligned columns."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import tagteller
from tagteller import Domain, plugins
from tagteller.output import TableWriter
from tests.builders import colour_model, solid_image
from tests.test_cli_core import colours_domain, images, run  # noqa: F401 - fixtures


@pytest.fixture
def spy_engine(monkeypatch):
    """Counts images the engine is asked to scan (none may be scanned before a bad -o is refused)."""
    from tagteller.engine import Engine

    calls: list[int] = []
    original = Engine.scan

    def scan(self, loaded, sources, *args, **kwargs):
        calls.append(len(sources))
        return original(self, loaded, sources, *args, **kwargs)

    monkeypatch.setattr(Engine, "scan", scan)
    return calls


@pytest.mark.parametrize("target", ["folder", "under-a-file"])
def test_bad_output_path_is_refused_before_scanning(colours_domain, images, tmp_path, spy_engine, target):
    out = tmp_path / "results" if target == "folder" else images / "red.jpg" / "results.json"
    if target == "folder":
        out.mkdir()
    result = run("scan", "-d", "colours", "-o", str(out), str(images))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(out) in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert spy_engine == []  # nothing scanned, nothing lost


@pytest.mark.parametrize("name, check", [
    ("out.json", lambda text: [r["label"] for r in json.loads(text)] == ["red"]),
    ("out.jsonl", lambda text: json.loads(text.splitlines()[0])["label"] == "red"),
    ("out.csv", lambda text: next(csv.DictReader(io.StringIO(text)))["label"] == "red"),
    ("out.txt", lambda text: text.startswith("FILE") and "red" in text),
])
def test_output_format_from_the_extension(colours_domain, images, tmp_path, name, check):
    out = tmp_path / name
    result = run("scan", "-d", "colours", "-o", str(out), str(images / "red.jpg"))
    assert result.exit_code == 0, result.stderr
    assert check(out.read_text())


def test_explicit_format_wins_and_dash_is_stdout(colours_domain, images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "x.json"
    assert run("scan", "-d", "colours", "-f", "csv", "-o", str(out), str(images / "red.jpg")).exit_code == 0
    assert out.read_text().startswith("file,status,label")
    result = run("scan", "-d", "colours", "-o", "-", "-f", "jsonl", str(images / "red.jpg"))
    assert result.exit_code == 0 and json.loads(result.stdout)["label"] == "red"
    assert not (Path("-")).exists()
    from tagteller.output import resolve_output

    assert resolve_output("-", None) == (None, "table")
    assert resolve_output(Path("a/b.JSONL"), None) == (Path("a/b.JSONL"), "jsonl")


def test_summary_line_on_stderr_with_o_file(colours_domain, images, tmp_path):
    out = tmp_path / "r.jsonl"
    result = run("scan", "-d", "colours", "-o", str(out), str(images))
    assert result.exit_code == 1  # broken.jpg
    summary = [line for line in result.stderr.splitlines() if line.startswith(f"{out}: ")]
    assert len(summary) == 1, result.stderr
    line = summary[0]
    assert "5 images in" in line and "images/s" in line and "1 failed" in line
    from collections import Counter

    labels = Counter(r["label"] for r in map(json.loads, out.read_text().splitlines()) if r["label"])
    assert sum(labels.values()) == 4
    assert ", ".join(f"{label} {n}" for label, n in labels.most_common()) in line
    assert "1 file skipped: not images" in result.stderr  # sub/readme.txt


def test_table_in_a_file_keeps_long_names_and_aligns_long_labels(tmp_path):
    long_label = "extraordinarily-long-label-name-for-a-sneaker"
    model = colour_model(tmp_path / "m.onnx", domain="long", labels=("red", "green", long_label))

    class LongPlugin:
        @tagteller.hookimpl
        def register_domains(self, register):
            register(Domain(name="long", description="d", labels=("red", "green", long_label), model_path=model))

    plugins.register_plugin(LongPlugin(), "long-plugin")
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "and-another-level-of-folders"
    deep.mkdir(parents=True)
    solid_image(deep / "red.png", (250, 5, 5))
    solid_image(tmp_path / "b.png", (5, 5, 250))
    out = tmp_path / "table.txt"
    result = run("scan", "-d", "long", "-o", str(out), str(deep / "red.png"), str(tmp_path / "b.png"))
    assert result.exit_code == 0, result.stderr
    lines = out.read_text().splitlines()
    assert str(deep / "red.png") in lines[1]  # whole, not "…" + its last 49 characters
    assert "…" not in out.read_text()
    columns = [line.index("CONFIDENCE") if i == 0 else line.index("%") for i, line in enumerate(lines)]
    files = ("FILE", str(deep / "red.png"), str(tmp_path / "b.png"))
    result_columns = {line.index(label, len(name)) for line, name, label in zip(lines, files, ("RESULT", "red", long_label))}
    assert len(result_columns) == 1, lines  # RESULT starts at the same column on every row
    assert lines[2].index(long_label) + len(long_label) < columns[0], lines  # the label fits its column


def test_table_on_a_narrow_terminal_shortens_names(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("COLUMNS", "100")
    stream = Tty()
    name = "/photos/" + "x" * 150 + ".jpg"
    writer = TableWriter(stream, names=[name], labels=["nike"])
    writer.write({"file": name, "status": "ok", "label": "nike", "confidence": 0.9, "sure": True,
                  "top": [{"label": "nike", "probability": 0.9}], "error": None, "domain": "d"})
    row = stream.getvalue().splitlines()[1]
    assert len(row) <= 100 and row.startswith("…") and "x.jpg" in row
