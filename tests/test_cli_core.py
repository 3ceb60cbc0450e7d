"""`tagteller scan`, `info`, `domains`, `plugins` end to end (in-process and as a real process)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tagteller
from tagteller import Domain, plugins
from tagteller.cli import build_app
from tagteller.paths import installed_model_path
from tests.builders import colour_model, solid_image

TAGTELLER = Path(sys.executable).parent / "tagteller"


def run(*args: str):
    return CliRunner().invoke(build_app(), list(args))


@pytest.fixture
def colours_domain(tmp_path):
    """A plugin that registers a `colours` domain whose shipped model is a colour model."""
    model = colour_model(tmp_path / "shipped-colours.onnx")

    class ColoursPlugin:
        @tagteller.hookimpl
        def register_domains(self, register):
            register(Domain(name="colours", description="Colour", labels=("red", "green", "blue"),
                            model_path=model, low_confidence=0.9))

    plugins.register_plugin(ColoursPlugin(), "colours-plugin")
    return model


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub" / "deeper").mkdir(parents=True)
    solid_image(folder / "red.jpg", (250, 5, 5))
    solid_image(folder / "sub" / "green.png", (5, 250, 5))
    solid_image(folder / "sub" / "deeper" / "blue.webp", (5, 5, 250))
    solid_image(folder / "sub" / "grey.png", (128, 128, 140))  # ambiguous: "not sure"
    (folder / "sub" / "readme.txt").write_text("not scanned: not an image extension")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return folder


def test_scan_folder_recursively_jsonl(colours_domain, images):
    result = run("scan", "--domain", "colours", "--format", "jsonl", str(images))
    assert result.exit_code == 1  # broken.jpg failed
    records = {Path(r["file"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(records) == {"red.jpg", "green.png", "blue.webp", "grey.png", "broken.jpg"}
    assert records["red.jpg"]["label"] == "red" and records["red.jpg"]["sure"] is True
    assert records["blue.webp"]["label"] == "blue"
    assert records["grey.png"]["sure"] is False
    assert records["broken.jpg"]["status"] == "error" and records["broken.jpg"]["error"]
    assert "broken.jpg" in result.stderr and "1 of 5 input(s) failed" in result.stderr


def test_scan_json_is_one_valid_array(colours_domain, images):
    result = run("scan", "-d", "colours", "-f", "json", "--top-k", "1", str(images / "red.jpg"), str(images / "sub" / "green.png"))
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [r["label"] for r in data] == ["red", "green"]
    assert all(len(r["top"]) == 1 for r in data)


def test_scan_csv_to_output_file(colours_domain, images, tmp_path):
    out = tmp_path / "results.csv"
    out.write_text("previous results\n")
    result = run("scan", "-d", "colours", "-f", "csv", "-o", str(out), str(images))
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {Path(r["file"]).name for r in rows} == {"red.jpg", "green.png", "blue.webp", "grey.png", "broken.jpg"}
    broken = next(r for r in rows if r["file"].endswith("broken.jpg"))
    assert broken["status"] == "error" and broken["error"]
    assert not list(tmp_path.glob(".results.csv.*"))  # temp file renamed away


def test_scan_table_says_not_sure(colours_domain, images):
    result = run("scan", "-d", "colours", str(images / "sub" / "grey.png"))
    assert result.exit_code == 0
    assert "not sure:" in result.stdout


def test_scan_glob_and_missing_inputs(colours_domain, images, tmp_path):
    result = run("scan", "-d", "colours", "-f", "jsonl", str(images / "**" / "*.png"), str(tmp_path / "nothing-here.jpg"),
                 str(tmp_path / "zz*.jpg"))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    errors = {r["file"]: r["error"] for r in records if r["status"] == "error"}
    assert errors[str(tmp_path / "nothing-here.jpg")] == "no such file or folder"
    assert errors[str(tmp_path / "zz*.jpg")] == "no file matches this pattern"
    assert sorted(Path(r["file"]).name for r in records if r["status"] == "ok") == ["green.png", "grey.png"]
    assert result.exit_code == 1


def test_usage_errors_exit_2(colours_domain, images, monkeypatch):
    assert run("scan", "-d", "socks", str(images)).exit_code == 2
    assert run("scan", "-d", "colours", "--format", "xml", str(images)).exit_code == 2
    assert run("scan", "-d", "colours", "--top-k", "0", str(images)).exit_code == 2
    # Neither --domain nor --model scans with every domain (tests/test_open_set.py); with no
    # domain that has a model, that is a configuration error.
    monkeypatch.setenv("TAGTELLER_PLUGINS", "")
    plugins.reset()
    result = run("scan", str(images))
    assert result.exit_code == 2 and "no domain has a model" in result.stderr


@pytest.fixture
def socks_domain():
    """A plugin that registers a `socks` domain with no model at all (no shipped, no installed)."""

    class SocksPlugin:
        @tagteller.hookimpl
        def register_domains(self, register):
            register(Domain(name="socks", description="Sock pattern", labels=("plain", "striped"), model_path=None))

    plugins.register_plugin(SocksPlugin(), "socks-plugin")


def test_domain_without_model_explains_how_to_get_one(socks_domain, images):
    result = run("scan", "-d", "socks", str(images))
    assert result.exit_code == 2
    assert "no model installed for domain 'socks'" in result.stderr
    assert "tagteller train --domain socks" in result.stderr


def test_model_for_another_domain_is_refused(colours_domain, images, tmp_path):
    other = colour_model(tmp_path / "other.onnx", domain="paint")
    result = run("scan", "-d", "colours", "--model", str(other), str(images))
    assert result.exit_code == 2 and "is for domain 'paint', not 'colours'" in result.stderr


def test_installed_model_shadows_shipped_one(colours_domain, images):
    installed = colour_model(installed_model_path("colours"), model_version="9")
    result = run("scan", "-d", "colours", "-f", "jsonl", str(images / "red.jpg"))
    assert json.loads(result.stdout)["model_version"] == "9"
    domains = json.loads(run("domains", "--json").stdout)
    colours = next(d for d in domains if d["name"] == "colours")
    assert colours["model"] == "installed" and colours["model_path"] == str(installed)


def test_domains_lists_builtins_with_model_state(socks_domain):
    result = run("domains", "--json")
    assert result.exit_code == 0
    rows = {d["name"]: d for d in json.loads(result.stdout)}
    assert {"apparel", "shoes", "products", "books", "clothing-tags", "trousers"} <= set(rows)
    # Every built-in domain ships a model; a domain without one says "none".
    assert {rows[name]["model"] for name in ("apparel", "shoes", "products", "books", "clothing-tags", "trousers")} == {"shipped"}
    assert rows["socks"]["model"] == "none"
    assert rows["clothing-tags"]["allow_new_labels"] is True
    table = run("domains")
    assert "clothing-tags" in table.stdout


def test_info_prints_metadata(colours_domain):
    result = run("info", "--json", str(colours_domain))
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["domain"] == "colours" and data["labels"] == ["red", "green", "blue"]
    assert data["input"]["height"] == 32 and data["preprocessing"]["color_mode"] == "RGB"
    assert "labels" in run("info", str(colours_domain)).stdout


def test_plain_onnxruntime_can_use_a_model_without_tagteller(colours_domain):
    """What README promises: labels and preprocessing are readable with onnxruntime alone."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(colours_domain), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    labels = json.loads(meta["labels"])
    spec = json.loads(meta["input"])
    batch = np.zeros((1, spec["height"], spec["width"], spec["channels"]), np.float32)
    batch[..., 2] = 255
    probs = sess.run(None, {sess.get_inputs()[0].name: batch})[0][0]
    assert labels[int(probs.argmax())] == "blue"


def test_scan_never_imports_tensorflow(colours_domain, images, tmp_path):
    """Run the real CLI in a subprocess and check tensorflow never entered sys.modules."""
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['tagteller', 'scan', '--model', sys.argv[1], sys.argv[2], '-f', 'jsonl']\n"
        "try:\n"
        "    from tagteller.cli import main; main()\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'matplotlib', 'fastapi'))\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, str(colours_domain), str(images / "red.jpg")],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TAGTELLER_HOME=str(tmp_path / "h")))
    assert '"label": "red"' in proc.stdout, proc.stderr
    assert "HEAVY=\n" in proc.stderr or proc.stderr.rstrip().endswith("HEAVY="), proc.stderr


def test_console_script_runs_as_a_process(colours_domain, images, tmp_path):
    proc = subprocess.run([str(TAGTELLER), "scan", "--model", str(colours_domain), "-f", "csv", str(images / "red.jpg")],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, TAGTELLER_HOME=str(tmp_path / "h")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split(",")[1:3] == ["ok", "red"]
