"""``tagteller scan --engine ray`` option checks that need no Ray runtime, and the cost a plain
scan must not pay: without the ``[ray]`` extra, one line naming it and exit 2; a plain scan never
imports Ray, pyarrow, fsspec or :mod:`tagteller.scale`."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tagteller.cli import build_app
from tests.builders import colour_model, solid_image


def run(*args: str):
    return CliRunner().invoke(build_app(), list(args))


@pytest.fixture
def model(tmp_path) -> Path:
    return colour_model(tmp_path / "colours.onnx")


@pytest.fixture
def image(tmp_path) -> Path:
    return solid_image(tmp_path / "red.jpg", (250, 5, 5))


def test_without_the_extra_one_line_names_it(monkeypatch, model, image, tmp_path):
    """Ray absent (find_spec answers None for it, as on a machine without the extra)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] == "ray" else real(name, *a))
    result = run("scan", "--model", str(model), "--engine", "ray", str(image), "--output", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --engine ray needs the [ray] extra: pip install 'tagteller[ray]'"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--engine", "ray"], "--engine ray writes result shards into a folder: give --output DIR"),
    (["--engine", "ray", "-o", "OUT", "-f", "csv"], "--engine ray writes parquet or jsonl shards, not 'csv'"),
    (["--engine", "ray", "-o", "OUT", "--price", "12"], "--price cannot be used with --engine ray"),
    (["--engine", "spark"], "unknown --engine 'spark'; choose from local, ray"),
    (["--resume"], "--resume: only with --engine ray"),
    (["--address", "auto", "--actors", "2"], "--address, --actors: only with --engine ray"),
])
def test_option_mistakes_are_one_line_and_exit_2(model, image, tmp_path, args, message):
    if importlib.util.find_spec("ray") is None and "ray" in args:
        pytest.skip("the [ray] extra is not installed: the missing extra is reported first")
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    result = run("scan", "--model", str(model), str(image), *args)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: {message}"]


def test_plain_scan_never_imports_ray(model, image, tmp_path):
    """The real CLI in a subprocess: an in-process scan answers without loading the extra."""
    probe = (
        "import sys\n"
        "sys.argv = ['tagteller', 'scan', '--model', sys.argv[1], sys.argv[2], '-f', 'jsonl']\n"
        "try:\n"
        "    from tagteller.cli import main; main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'pyarrow', 'fsspec', 'pandas')\n"
        "               or m.startswith('tagteller.scale') or m == 'tagteller.cli.scan_ray')\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, str(model), str(image)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, TAGTELLER_HOME=str(tmp_path / "h")))
    assert '"label": "red"' in proc.stdout, proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == "HEAVY=", proc.stderr


def test_output_url_survives_the_path_option():
    from tagteller.cli.scan_ray import output_location

    assert output_location(Path("s3://bucket/results/run-1")) == "s3://bucket/results/run-1"
    assert output_location(Path("gs://bucket")) == "gs://bucket"
    assert output_location(Path("file:///data/out")) == "/data/out"
    assert output_location(Path("results/out")) == "results/out"
