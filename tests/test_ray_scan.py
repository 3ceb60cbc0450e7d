"""``tagteller scan --engine ray`` on a local Ray runtime (the ``[ray]`` extra; skipped without it).

One Ray runtime (2 CPUs) serves the whole module. The scans run a few hundred generated images and
a few bad files through the real pipeline (Ray reads, the actor pool, shards) and are checked
against the in-process engine, record by record; a job stopped halfway resumes without decoding
the finished files again; the CLI runs as a real process against the same runtime.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pa = pytest.importorskip("pyarrow")
pytest.importorskip("fsspec")

from tagteller.engine import Engine  # noqa: E402
from tagteller.output import result_record  # noqa: E402
from tagteller.scale.job import ScanPlan, prepare, ray_runtime  # noqa: E402
from tagteller.scale.shards import done_inputs, list_shards, output_filesystem, read_shard  # noqa: E402
from tests.builders import open_set_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")  # Ray's own settings

TAGTELLER = Path(sys.executable).parent / "tagteller"
IMAGES = 240
BAD = {"not-an-image.jpg": b"this is text, not a JPEG", "empty.png": b"",
       "truncated.jpg": None}  # None: the first 200 bytes of a real JPEG
LOW_CONFIDENCE = 0.6


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray runtime with 2 CPUs for the module; shut down at the end."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """An open-set colour model: reddish images are apples, limes or blueberries by their mean
    colour, images far from red are unknown."""
    return open_set_model(tmp_path_factory.mktemp("model") / "fruit.onnx", threshold=150.0)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """IMAGES noisy JPEG and PNG images of many colours and sizes in nested folders, plus the bad files."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(17)
    for i in range(IMAGES):
        sub = folder / f"shelf-{i % 4}"
        sub.mkdir(exist_ok=True)
        size = (int(rng.integers(24, 90)), int(rng.integers(24, 90)))
        base = rng.uniform(0, 255, 3)
        pixels = np.clip(base + rng.normal(0, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
        ext = ".jpg" if i % 3 else ".png"
        Image.fromarray(pixels).save(sub / f"item-{i:03d}{ext}")
    real_jpeg = next(folder.glob("shelf-1/*.jpg")).read_bytes()
    for name, data in BAD.items():
        (folder / name).write_bytes(real_jpeg[:200] if data is None else data)
    return folder


def reference(model: Path, files: list[str]) -> dict[str, dict]:
    """The in-process engine's records for ``files`` (the CLI's own path)."""
    engine = Engine()
    try:
        loaded = engine.load(model)
        return {r.source: result_record(r, LOW_CONFIDENCE) for r in engine.scan(loaded, files, names=files)}
    finally:
        engine.close()


def plan_for(model: Path, sources: list[str], output: Path, **kw) -> ScanPlan:
    return ScanPlan(sources=sources, output=str(output), model_path=model, domain="fruit", model_version="1",
                    low_confidence=LOW_CONFIDENCE, **kw)


def shard_records(output: Path | str) -> list[dict]:
    fs, folder = output_filesystem(str(output))
    return [row for path in list_shards(fs, folder) for row in read_shard(fs, path).to_pylist()]


def all_files(photos: Path) -> list[str]:
    return sorted(str(p) for p in photos.rglob("*") if p.is_file())


def assert_same_as_engine(records: list[dict], expected: dict[str, dict]) -> None:
    by_file = {r["file"]: r for r in records}
    assert len(by_file) == len(records), "a file has two records"
    assert set(by_file) == set(expected)
    for name, want in expected.items():
        got = by_file[name]
        assert got["status"] == want["status"], name
        assert got["label"] == want["label"], name
        # The actor decodes bytes, not a path: an empty input's reason says "data", not "file".
        want_error = want["error"] and want["error"].replace("empty file", "empty data")
        assert got["error"] == want_error, name
        assert [p["label"] for p in got["top"]] == [p["label"] for p in want["top"]], name
        np.testing.assert_allclose([p["probability"] for p in got["top"]],
                                   [p["probability"] for p in want["top"]], atol=1e-6, err_msg=name)
        if want["confidence"] is not None:
            assert abs(got["confidence"] - want["confidence"]) <= 1e-6, name
        for key in ("sure", "domain", "model_version", "ood_threshold"):
            assert got[key] == want[key], (name, key)
        if want["ood_score"] is not None:
            assert abs(got["ood_score"] - want["ood_score"]) <= 1e-6 * max(1.0, abs(want["ood_score"])), name
        assert got["size"] == os.path.getsize(name), name


def test_same_answers_as_the_in_process_engine_with_error_rows(ray_cluster, model, photos, tmp_path):
    out = tmp_path / "out"
    job = prepare(plan_for(model, [str(photos), str(photos / "no-such-folder")], out, shard_rows=100))
    assert len(job.todo) == IMAGES + len(BAD)
    with ray_runtime(None):  # the module's runtime: used as it is, left running
        tables = list(job.results())
    assert ray.is_initialized()
    records = shard_records(out)
    missing = [r for r in records if r["file"].endswith("no-such-folder")]
    assert [(m["status"], m["error"]) for m in missing] == [("error", "no such file or folder")]
    records = [r for r in records if r not in missing]
    assert_same_as_engine(records, reference(model, all_files(photos)))
    statuses = [r["status"] for r in records]
    assert statuses.count("error") == len(BAD)
    assert {"ok", "unknown"} <= set(statuses)  # the open-set score reached the records
    errors = {Path(r["file"]).name: r["error"] for r in records if r["status"] == "error"}
    assert errors["empty.png"] == "empty data (0 bytes)"
    assert errors["not-an-image.jpg"] == "not a recognised image format"
    assert "truncated" in errors["truncated.jpg"].lower()
    summary = job.summary
    assert summary.scanned == sum(t.num_rows for t in tables) == IMAGES + len(BAD)
    assert summary.failed == len(BAD) + 1 and summary.any_failed
    assert sum(summary.labels.values()) == statuses.count("ok")
    # A shard is written once 100 rows are waiting: several shards, every one whole, no temp left.
    names = sorted(p.name for p in out.iterdir())
    assert len(names) >= 2 and all(n.startswith("part-") and n.endswith(".parquet") for n in names)


def test_stopped_job_resumes_without_decoding_done_files_again(ray_cluster, model, photos, tmp_path):
    import shutil

    photos = Path(shutil.copytree(photos, tmp_path / "photos"))  # its files get overwritten below
    out = tmp_path / "out"
    files = all_files(photos)
    job = prepare(plan_for(model, [str(photos)], out, shard_rows=20))
    with ray_runtime(None):
        results = job.results()
        received = 0
        for table in results:  # stop the job halfway, as Ctrl-C does
            received += table.num_rows
            if received >= len(files) // 2:
                break
        results.close()
    first = shard_records(out)
    assert len(first) == received  # everything received was saved, nothing else
    assert len(files) // 2 <= len(first) < len(files)

    # Overwrite every finished file with garbage of the same size: decoding any of them again
    # would turn it into an error row. Resume matches by path and size, so none is read.
    done = {r["file"]: r for r in first}
    for name in done:
        size = os.path.getsize(name)
        Path(name).write_bytes(b"\0" * size)
    resumed = prepare(plan_for(model, [str(photos)], out, resume=True, shard_rows=20))
    assert {f.name for f in resumed.todo} == set(files) - set(done)
    assert len(resumed.skipped) == len(done)
    with ray_runtime(None):
        list(resumed.results())
    # The actors produced exactly one record per remaining file: what they decoded.
    assert resumed.summary.scanned == len(files) - len(done)
    records = shard_records(out)
    assert sorted(r["file"] for r in records) == files  # every file once
    assert all(r["status"] != "error" or Path(r["file"]).name in BAD for r in records)
    assert [r for r in records if r["file"] in done] == first  # the first run's records, untouched
    # Bad files that were already recorded count as failures of the job: exit 1 either way.
    assert resumed.summary.any_failed


def test_fsspec_url_and_jsonl_shards(ray_cluster, model, photos, tmp_path):
    """A URL source goes through fsspec (here local://, the fsspec route without a network) in the
    same job as a plain folder (one read per filesystem, unioned); the records name URL files by
    URL; JSON-lines shards read back as the same records."""
    out = tmp_path / "out"
    job = prepare(plan_for(model, [f"local://{photos}/shelf-2", str(photos / "shelf-1")], out, fmt="jsonl"))
    with ray_runtime(None):
        list(job.results())
    shards = list(out.iterdir())
    assert shards and all(p.suffix == ".jsonl" for p in shards)
    lines = [json.loads(line) for p in shards for line in p.read_text().splitlines()]
    remote = sorted(str(p) for p in (photos / "shelf-2").iterdir())
    local = sorted(str(p) for p in (photos / "shelf-1").iterdir())
    expected = reference(model, remote + local)
    assert sorted(r["file"] for r in lines) == sorted([f"file://{name}" for name in remote] + local)
    for record in lines:
        want = expected[record["file"].removeprefix("file://")]
        assert (record["status"], record["label"], record["top"]) == (want["status"], want["label"], want["top"])
    assert set(done_inputs(*output_filesystem(str(out)))) == {r["file"] for r in lines}


def test_cli_process_against_a_cluster(ray_cluster, model, photos, tmp_path):
    """The real console script, connecting to the module's runtime with --address: error lines,
    a summary, exit 1 for the bad files; a second run into the same folder without --resume is
    refused (exit 2); with --resume nothing is left to do (exit 1: the bad files failed)."""
    out = tmp_path / "out"
    env = dict(os.environ, TAGTELLER_HOME=str(tmp_path / "home"))
    command = [str(TAGTELLER), "scan", "--model", str(model), "--engine", "ray", "--address", ray_cluster,
               str(photos / "shelf-3"), str(photos / "not-an-image.jpg"), "--output", str(out)]
    proc = subprocess.run(command + ["--progress"], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 1, proc.stderr
    assert f"error: {photos / 'not-an-image.jpg'}: not a recognised image format" in proc.stderr
    count = IMAGES // 4 + 1
    assert f"{count} image(s) scanned in" in proc.stderr and "; 1 failed" in proc.stderr
    assert "labels: " in proc.stderr
    assert len(shard_records(out)) == count

    again = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1].startswith(f"error: {out}: already holds 1 result shard(s)")

    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=240, env=env)
    assert resumed.returncode == 1, resumed.stderr
    assert f"{count} skipped as already done (1 of them failed before)" in resumed.stderr
    assert len(shard_records(out)) == count


def test_a_file_deleted_after_the_listing_is_an_error_row(ray_cluster, model, photos, tmp_path):
    import shutil

    folder = Path(shutil.copytree(photos / "shelf-0", tmp_path / "photos"))
    out = tmp_path / "out"
    job = prepare(plan_for(model, [str(folder)], out))
    gone = sorted(folder.iterdir())[3]
    gone.unlink()
    with ray_runtime(None):
        list(job.results())
    records = {r["file"]: r for r in shard_records(out)}
    assert len(records) == IMAGES // 4
    assert records[str(gone)]["status"] == "error"
    assert records[str(gone)]["error"].startswith("file not found when it was read")
    assert sum(r["status"] == "error" for r in records.values()) == 1
    assert job.summary.failed == 1


def test_benchmark_script_runs_quick(ray_cluster, tmp_path):
    """benchmarks/ray_throughput.py on tiny inputs, against the module's runtime: it finishes,
    records its section with every pipeline, and finds the same answers on both sides (its
    figures are not checked: this is not a timed test)."""
    from tests.conftest import REPO

    results = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ray_throughput.py"), "--quick", "--cache", str(tmp_path / "cache"),
         "--results", str(results), "--address", ray_cluster],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    section = results.read_text()
    assert "### Ray Data against the in-process engine" in section
    for row in ("| in-process Engine.scan", "| Ray Data, 1 actor |", "| Ray Data, 2 actors |"):
        assert row in section
    assert "every record matches the in-process engine" in section


def single_image_model(path: Path) -> Path:
    """A colour model that loads (its check runs one image) but fails on any batch of more than one
    image: its graph reshapes the pooled colours to (1, 3)."""
    from onnx import TensorProto, helper

    from tagteller.modelfile import ModelInfo, embed_metadata, save_model
    from tagteller.preprocessing import Preprocessing

    weights = np.eye(3, dtype=np.float32) * 0.1
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image", "axes"], ["pooled"], keepdims=0),
         helper.make_node("Reshape", ["pooled", "one_row"], ["row"]),
         helper.make_node("MatMul", ["row", "W"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        "one-at-a-time", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 32, 32, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
                     helper.make_tensor("one_row", TensorProto.INT64, [2], [1, 3]),
                     helper.make_tensor("W", TensorProto.FLOAT, [3, 3], weights.ravel().tolist())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    embed_metadata(model, ModelInfo(domain="fruit", labels=("red", "green", "blue"), height=32, width=32,
                                    color_mode="RGB", preprocessing=Preprocessing(),
                                    metrics={"val_accuracy": 1.0}, model_version="1"))
    save_model(model, path)
    return path


def test_a_model_failing_in_the_actors_stops_the_job_in_one_line(ray_cluster, photos, tmp_path):
    """A failure Ray cannot retry away (here the model itself, in every actor): one line naming the
    cause, the resume hint, exit 1, no traceback."""
    model = single_image_model(tmp_path / "one-at-a-time.onnx")
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(TAGTELLER), "scan", "--model", str(model), "--engine", "ray", "--address", ray_cluster,
         str(photos / "shelf-0"), "--output", str(out)],
        capture_output=True, text=True, timeout=240, env=dict(os.environ, TAGTELLER_HOME=str(tmp_path / "home")))
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "core_worker" not in line]
    assert "Traceback" not in proc.stderr
    stopped = [line for line in lines if line.startswith("error: the Ray job stopped: ")]
    assert len(stopped) == 1, proc.stderr
    assert stopped[0].startswith(f"error: the Ray job stopped: ModelError: {model}: the model failed on a ("), stopped
    assert lines[-1].endswith("run the same command with --resume to carry on")
    assert len(lines) == 2, lines  # Ray Data's own multi-line report of the failure stays quiet
