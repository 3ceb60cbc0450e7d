"""``tagteller demo``: scoring, the offline copy, the checksummed cache and the download path.

The data is written here in idx format; the model is ``builders.colour_model`` for the apparel
labels on 28x28 grayscale input, whose answer follows from the pixels alone: an image brighter
than mid-grey is "t-shirt" (label 0), a darker one "trouser" (label 1). So every expected score
below is computed by hand from the arrays, never by the engine.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import requests
from typer.testing import CliRunner

from tagteller import demo
from tagteller.cli import build_app
from tagteller.datasets import write_idx
from tagteller.paths import installed_model_path
from tagteller_plugins import apparel
from tests.builders import colour_model

IMAGES, LABELS_FILE = (f.name for f in demo.OFFICIAL_FILES)
N_IMAGES = 60


def run(*args: str):
    return CliRunner().invoke(build_app(), ["demo", *args])


@pytest.fixture
def model() -> Path:
    path = installed_model_path("apparel")
    path.parent.mkdir(parents=True, exist_ok=True)
    return colour_model(path, domain="apparel", labels=apparel.LABELS, size=(28, 28), color_mode="L",
                        model_version="7")


def make_split(n: int = N_IMAGES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy 28x28 images, each clearly dark (0..100) or clearly light (155..255)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    light = rng.random(n) < 0.5
    low = np.where(light, 155, 0)[:, None, None]
    images = (low + rng.integers(0, 101, size=(n, 28, 28))).astype(np.uint8)
    return images, labels


def write_split(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / IMAGES, images)
    write_idx(folder / LABELS_FILE, labels)
    return folder


def hand_predictions(images: np.ndarray) -> np.ndarray:
    """What the colour model answers: 0 (t-shirt) above mid-grey, 1 (trouser) below."""
    return np.where(images.reshape(len(images), -1).mean(axis=1) > 127.5, 0, 1)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def adopt_as_official(monkeypatch, folder: Path) -> None:
    """Make the files in ``folder`` the ones whose md5s the demo checks against."""
    monkeypatch.setattr(demo, "OFFICIAL_FILES", tuple(
        demo.OfficialFile(f.name, md5(folder / f.name)) for f in demo.OFFICIAL_FILES))


class FakeMirror:
    """A pooch downloader standing in for ``demo.make_downloader``'s: serves files from ``folder``
    (or, for ``fail_hosts``, raises the connection error requests raises offline) and records
    every URL asked for."""

    def __init__(self, folder: Path, fail_hosts: tuple[str, ...] = ()) -> None:
        self.folder = folder
        self.fail_hosts = fail_hosts
        self.urls: list[str] = []

    def __call__(self, url, output_file, pooch_instance, check_only=False) -> None:
        self.urls.append(url)
        if any(host in url for host in self.fail_hosts):
            raise requests.ConnectionError("Failed to establish a new connection: [Errno -3] Temporary failure "
                                           "in name resolution")
        Path(output_file).write_bytes((self.folder / url.rsplit("/", 1)[1]).read_bytes())

    def install(self, monkeypatch) -> FakeMirror:
        monkeypatch.setattr(demo, "make_downloader", lambda name, progress=None: self)
        return self


def test_demo_prints_the_hand_computed_accuracy_and_class_lines(tmp_path, model):
    images, labels = make_split()
    folder = write_split(tmp_path / "offline", images, labels)
    result = run("--from", str(folder))
    assert result.exit_code == 0, result.output
    expected = hand_predictions(images)
    correct = int((expected == labels).sum())
    assert 0 < correct < N_IMAGES  # the data is mixed enough for the score to mean something
    match = re.search(r"^accuracy: ([\d.]+)% \((\d+) of (\d+)\)$", result.stdout, re.M)
    assert match, result.stdout
    assert (int(match[2]), int(match[3])) == (correct, N_IMAGES)
    assert float(match[1]) == pytest.approx(100 * correct / N_IMAGES, abs=0.005)
    for number, label in enumerate(apparel.LABELS):
        count = int((labels == number).sum())
        hits = int(((labels == number) & (expected == number)).sum())
        guessed = int((expected == number).sum())
        recall = f"{100 * hits / count:.2f}%" if count else "-"
        precision = f"{100 * hits / guessed:.2f}%" if guessed else "-"
        line = re.search(rf"^  {re.escape(label)} +(\S+) +(\S+) +(\d+)$", result.stdout, re.M)
        assert line, f"no line for {label}:\n{result.stdout}"
        assert line.groups() == (recall, precision, str(count))
    assert re.search(r"^speed: +[\d.]+ images/s \(60 images in", result.stdout, re.M)
    assert str(model) in result.stdout and "version 7" in result.stdout
    assert "not the official Fashion-MNIST test split" in result.stderr  # test data, said so


def test_demo_json_with_limit_parses_and_scores_the_first_images(tmp_path, model):
    images, labels = make_split(seed=3)
    folder = write_split(tmp_path / "offline", images, labels)
    result = run("--from", str(folder), "--limit", "25", "--json", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    images, labels = images[:25], labels[:25]
    expected = hand_predictions(images)
    assert report["total"] == 25 and report["dataset"]["images"] == 25
    assert report["correct"] == int((expected == labels).sum())
    assert report["accuracy"] == pytest.approx(float((expected == labels).mean()), abs=1e-6)
    assert report["dataset"]["official"] is False and report["dataset"]["origin"] == "from"
    assert report["model"] == {"path": str(model), "version": "7", "source": "installed"}
    assert report["batch_size"] == 4 and report["images_per_second"] > 0
    assert [c["label"] for c in report["classes"]] == list(apparel.LABELS)
    for number, c in enumerate(report["classes"]):
        hits = int(((labels == number) & (expected == number)).sum())
        assert c["count"] == int((labels == number).sum())
        assert c["predicted"] == int((expected == number).sum())
        assert c["recall"] == (pytest.approx(hits / c["count"]) if c["count"] else None)
        assert c["precision"] == (pytest.approx(hits / c["predicted"]) if c["predicted"] else None)
    assert report["failed"] == []


def test_offline_scans_the_packaged_sample_and_says_so(monkeypatch):
    mirror = FakeMirror(Path("/nonexistent"), fail_hosts=("amazonaws.com", "githubusercontent.com"))
    mirror.install(monkeypatch)
    result = run()  # the shipped apparel model
    assert result.exit_code == 0, result.stderr
    assert "could not download" in result.stderr and "sample that ships with tagteller" in result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("data:     the 1,000-image sample") and "not the official test split" in first
    accuracy = float(re.search(r"accuracy: ([\d.]+)%", result.stdout).group(1))
    assert accuracy >= 90.0  # the shipped model on images it never trained on
    assert len([line for line in result.stdout.splitlines() if line.startswith("  ") and "100" in line]) >= 10


def test_offline_without_a_copy_or_sample_is_one_line_and_exit_2(monkeypatch, model, tmp_path):
    monkeypatch.setattr(demo, "PACKAGED_SAMPLE", tmp_path / "no-sample")
    mirror = FakeMirror(Path("/nonexistent"), fail_hosts=("amazonaws.com", "githubusercontent.com"))
    mirror.install(monkeypatch)
    result = run()
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "could not download" in lines[0] and "--from DIR" in lines[0]
    assert IMAGES in lines[0] and LABELS_FILE in lines[0]
    assert [u.rsplit("/", 1)[0] + "/" for u in mirror.urls] == list(demo.MIRRORS)  # both were tried
    cache = demo.cache_folder()
    assert not cache.exists() or list(cache.iterdir()) == []  # no half-written or temp file left


def test_a_corrupt_cached_file_is_downloaded_again(tmp_path, monkeypatch, model):
    images, labels = make_split(seed=5)
    upstream = write_split(tmp_path / "upstream", images, labels)
    adopt_as_official(monkeypatch, upstream)
    cache = demo.cache_folder()
    cache.mkdir(parents=True)
    (cache / IMAGES).write_bytes((upstream / IMAGES).read_bytes()[:-10])  # truncated
    (cache / LABELS_FILE).write_bytes((upstream / LABELS_FILE).read_bytes())
    mirror = FakeMirror(upstream)
    mirror.install(monkeypatch)

    result = run("--json")
    assert result.exit_code == 0, result.output
    assert mirror.urls == [demo.MIRRORS[0] + IMAGES]  # only the corrupt file, from the first mirror
    assert md5(cache / IMAGES) == md5(upstream / IMAGES)
    assert "is corrupt" in result.stderr
    report = json.loads(result.stdout)
    assert report["dataset"]["official"] is True and report["dataset"]["origin"] == "download"
    assert report["correct"] == int((hand_predictions(images) == labels).sum())

    again = run("--json")  # now the cache is whole: nothing is fetched
    assert again.exit_code == 0, again.output
    assert len(mirror.urls) == 1
    assert json.loads(again.stdout)["dataset"]["origin"] == "cache"
    assert again.stderr == ""


def test_wrong_bytes_from_every_mirror_are_refused_and_not_cached(tmp_path, monkeypatch, model):
    images, labels = make_split()
    upstream = write_split(tmp_path / "upstream", images, labels)
    FakeMirror(upstream).install(monkeypatch)  # serves files with other md5s
    monkeypatch.setattr(demo, "PACKAGED_SAMPLE", tmp_path / "no-sample")  # the error, not the fallback
    result = run()
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "md5" in lines[0] and "--from DIR" in lines[0], result.stderr
    assert list(demo.cache_folder().iterdir()) == []


def test_the_official_md5_is_checked_for_an_offline_copy(tmp_path, monkeypatch, model):
    images, labels = make_split()
    folder = write_split(tmp_path / "offline", images, labels)
    adopt_as_official(monkeypatch, folder)
    result = run("--from", str(folder))
    assert result.exit_code == 0, result.output
    assert "official, md5 verified" in result.stdout
    assert result.stderr == ""


def test_missing_offline_file_is_named_in_one_line(tmp_path, model):
    images, labels = make_split()
    folder = write_split(tmp_path / "offline", images, labels)
    (folder / LABELS_FILE).unlink()
    result = run("--from", str(folder))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(folder / LABELS_FILE) in lines[0] and "missing" in lines[0]


def test_mismatched_idx_files_are_a_clear_error(tmp_path, model):
    images, labels = make_split()
    folder = write_split(tmp_path / "offline", images, labels[:-1])
    result = run("--from", str(folder))
    assert result.exit_code == 2
    note, error = result.stderr.strip().splitlines()  # test data: a note that it is not official
    assert note.startswith("note: ") and "not the official" in note
    assert error.startswith("error: ") and "idx shapes do not fit" in error


def test_no_model_is_one_line_and_exit_2_before_any_download(monkeypatch):
    monkeypatch.setattr(apparel, "DOMAIN", replace(apparel.DOMAIN, model_path=None))
    mirror = FakeMirror(Path("/nonexistent"))
    mirror.install(monkeypatch)
    result = run()
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no model" in lines[0] and "apparel" in lines[0]
    assert mirror.urls == []


class _Handler(http.server.BaseHTTPRequestHandler):
    folder: Path

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        path = self.folder / self.path.lstrip("/")
        if self.path.startswith("/good/") and path.is_file():
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self.send_error(404)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def local_mirror(tmp_path):
    """A real HTTP server on localhost: ``/good/<file>`` serves, anything else is 404."""
    _Handler.folder = tmp_path / "www"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "www" / "good"
    server.shutdown()
    server.server_close()


def test_real_download_falls_back_to_the_second_mirror(local_mirror, monkeypatch, model):
    base, good = local_mirror
    images, labels = make_split(seed=9)
    write_split(good, images, labels)
    adopt_as_official(monkeypatch, good)
    monkeypatch.setattr(demo, "MIRRORS", (f"{base}/missing/", f"{base}/good/"))
    result = run("--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dataset"]["origin"] == "download" and report["dataset"]["official"] is True
    assert report["correct"] == int((hand_predictions(images) == labels).sum())
    for name in (IMAGES, LABELS_FILE):
        assert (demo.cache_folder() / name).read_bytes() == (good / name).read_bytes()
    assert sorted(p.name for p in demo.cache_folder().iterdir()) == sorted((IMAGES, LABELS_FILE))


def test_download_reports_the_http_error_of_each_mirror(local_mirror, monkeypatch, model):
    base, _good = local_mirror
    monkeypatch.setattr(demo, "MIRRORS", (f"{base}/missing/", f"{base}/gone/"))
    monkeypatch.setattr(demo, "PACKAGED_SAMPLE", Path("/nonexistent/no-sample"))  # the error, not the fallback
    result = run()
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].count("HTTP 404") == 2, result.stderr


@pytest.fixture
def refused_port() -> int:
    """A localhost port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_falls_back_to_the_packaged_sample(refused_port, monkeypatch):
    """pooch itself, through requests, meets a refused connection on each mirror: no network used."""
    monkeypatch.setattr(demo, "MIRRORS", (f"http://127.0.0.1:{refused_port}/a/", f"http://127.0.0.1:{refused_port}/b/"))
    result = run("--limit", "50", "--json")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and result.stderr.strip() == notes[0], result.stderr
    assert notes[0].count("127.0.0.1") == 2 and "refused" in notes[0].lower()
    assert "sample that ships with tagteller" in notes[0]
    report = json.loads(result.stdout)
    assert report["dataset"]["origin"] == "sample" and report["dataset"]["official"] is False
    cache = demo.cache_folder()
    assert not cache.exists() or list(cache.iterdir()) == []  # no temp file left behind


def test_download_goes_through_pooch(monkeypatch, tmp_path):
    import pooch

    calls = []
    real = pooch.retrieve

    def spy(url, known_hash, **kwargs):
        calls.append((url, known_hash))
        return real(url, known_hash, **kwargs)

    monkeypatch.setattr(pooch, "retrieve", spy)
    images, labels = make_split()
    upstream = write_split(tmp_path / "upstream", images, labels)
    adopt_as_official(monkeypatch, upstream)
    FakeMirror(upstream).install(monkeypatch)
    demo.cached_test_split(tmp_path / "cache")
    assert [known for _, known in calls] == [f"md5:{f.md5}" for f in demo.OFFICIAL_FILES]


def test_demo_macro_f1_is_the_standard_one(tmp_path, model):
    """Over the classes in the truth or the answers, as scikit-learn and ``tagteller evaluate``."""
    from sklearn.metrics import f1_score

    images, labels = make_split(seed=5)
    folder = write_split(tmp_path / "offline", images, labels)
    report = json.loads(run("--from", str(folder), "--json").stdout)
    expected = hand_predictions(images)
    assert report["macro_f1"] == pytest.approx(f1_score(labels, expected, average="macro"), abs=1e-6)
