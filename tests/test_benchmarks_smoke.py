"""The benchmark scripts in ``benchmarks/`` run on tiny inputs (``--quick``), so they cannot rot.

Each script runs as its own process, as a user runs it, writing to a results file and a cache
under the test's temporary folder (never BENCHMARKS.md). The figures are not checked for speed
(these are not timed tests): what is checked is that each script finishes, appends a section
with its command, machine and table, and that the numbers it records hang together (the bound
is computed from the decode and inference rates as documented). Scripts that need tensorflow
are marked ``train`` (skipped without it); ``limit.py`` and ``run_all.py`` run without it on a model built here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from tests.builders import colour_model
from tests.conftest import REPO

BENCH = REPO / "benchmarks"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A cache (models, photos) shared by the scripts of this module, and a results file."""
    root = tmp_path_factory.mktemp("bench")
    return {"cache": root / "cache", "results": root / "BENCHMARKS.md", "root": root}


def run_script(workspace, script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, str(BENCH / script), "--quick", "--cache", str(workspace["cache"]),
           "--results", str(workspace["results"]), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=workspace["root"])
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def last_section(workspace, title: str) -> tuple[str, dict]:
    """The newest section with ``title`` in the results file, and its recorded figures."""
    text = workspace["results"].read_text(encoding="utf-8")
    sections = [s for s in text.split("\n### ") if s.startswith(title)]
    assert sections, f"no section {title!r} in the results file"
    section = sections[-1]
    assert "- command: `" in section and "- machine: " in section and "| --- |" in section
    assert re.search(r"\d+ cores \(", section)
    match = re.search(r"<!-- figures: (.*) -->", section)
    assert match, "the section keeps its raw figures"
    return section, json.loads(match.group(1))


@pytest.fixture(scope="module")
def tiny_model(workspace):
    workspace["root"].mkdir(parents=True, exist_ok=True)
    return colour_model(workspace["root"] / "colours.onnx", size=(32, 32))


def has_git_history() -> bool:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "HEAD"],
                              capture_output=True).returncode == 0
    except OSError:
        return False


def test_limit_records_the_bound_from_its_own_rates(workspace, tiny_model):
    baseline = ["--baseline-ref", "HEAD"] if has_git_history() else []
    proc = run_script(workspace, "limit.py", "--model", str(tiny_model), *baseline)
    assert "bound for" in proc.stdout
    section, figures = last_section(workspace, "The limit")
    cores = figures["cores"]
    assert figures["D1"] > 0 and figures["I1"] > 0 and figures["scan_e2e"] > 0
    assert figures["bound"] == pytest.approx(cores / (1 / figures["D1"] + 1 / figures["I1"]))
    assert figures["bound_2_cores"] == pytest.approx(2 / (1 / figures["D1"] + 1 / figures["I1"]))
    assert len(figures["sweep"]) >= 5  # the tuning sweep ran every setting
    assert "JPEG draft size" in section and "Tuning sweep" in section
    assert "(quick: tiny inputs" in section  # a quick run says its figures mean nothing
    if baseline:  # the engine at HEAD ran beside this one on every workload
        assert len(figures["baseline"]) == 4
        assert all(r["before"] and r["after"] for r in figures["baseline"].values())


def test_run_all_runs_the_scripts_it_is_asked_for(workspace, tiny_model):
    before = workspace["results"].read_text(encoding="utf-8") if workspace["results"].is_file() else ""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--quick", "--only", "limit.py",
                           "--baseline-ref", "", "--model", str(tiny_model), "--cache", str(workspace["cache"]),
                           "--results", str(workspace["results"])],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "== limit.py: exit 0" in proc.stdout
    after = workspace["results"].read_text(encoding="utf-8")
    assert after.startswith(before) and after.count("### The limit") == before.count("### The limit") + 1


def test_synthetic_photos_when_no_shared_datasets(workspace, monkeypatch):
    """Without ../shared, the photo set is synthesised at the sizes asked for."""
    spec = importlib.util.spec_from_file_location("benchkit_under_test", BENCH / "benchkit.py")
    benchkit = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, benchkit)  # its dataclasses look their module up
    spec.loader.exec_module(benchkit)
    monkeypatch.setattr(benchkit, "PHOTO_SOURCES", ())
    args = type("Args", (), {"cache": str(workspace["root"] / "synthetic"), "images": None})()
    photos = benchkit.ensure_photos(args, 3, (300, 400))
    from PIL import Image

    assert len(photos) == 3
    for photo in photos:
        with Image.open(photo) as im:
            assert im.format == "JPEG" and 300 <= max(im.size) <= 400
    assert "synthetic" in str(photos[0].parent)


@pytest.mark.train  # the script runs tensorflow in its own process
def test_cold_start(workspace):
    run_script(workspace, "cold_start.py")
    section, figures = last_section(workspace, "Cold start")
    assert "tagteller scan" in section and "seed-style" in section
    assert set(figures["walls"]) == {"tagteller scan", "seed-style (TF + Keras predict)"}
    assert all(w > 0 for walls in figures["walls"].values() for w in walls)
    assert all(r > 10 for rss in figures["rss_mb"].values() for r in rss)  # a Python process, in MB


@pytest.mark.train  # the script runs tensorflow in its own process
def test_folder_throughput(workspace):
    run_script(workspace, "folder_throughput.py")
    section, figures = last_section(workspace, "Folder throughput")
    assert figures["tagteller"]["images"] == 12 and figures["keras"]["images"] == 12
    assert 0.0 <= figures["agreement"] <= 1.0
    assert ">= 4x the Keras pipeline" in figures["verdicts"]


@pytest.mark.train  # the script runs tensorflow in its own process
def test_training_input(workspace):
    run_script(workspace, "training_input.py", timeout=180)
    section, figures = last_section(workspace, "Training input")
    assert figures["ours_n"] == figures["theirs_n"] == 24  # the same folder on both sides
    assert len(figures["ours_s"]) == 1 and all(len(t) == 1 for t in figures["theirs_s"].values())


@pytest.mark.train  # the script runs tensorflow in its own process
def test_int8(workspace):
    run_script(workspace, "int8.py")
    section, figures = last_section(workspace, "int8 against fp32")
    assert figures["int8"]["size_mb"] < figures["fp32"]["size_mb"]  # quantized weights are smaller
    assert 0.0 <= figures["agreement"] <= 1.0
