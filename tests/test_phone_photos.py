"""Phone photos: HEIC/HEIF (pillow-heif) and AVIF (Pillow) decode wherever images are read (the
CLI, the page's uploads, training data, feedback), and folder scans count what they skip."""

from __future__ import annotations

import ast
import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features
from typer.testing import CliRunner

from tagteller.cli import build_app
from tagteller.datasets import FolderLayout
from tests.conftest import REPO, SHARED_DATASETS

pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is a base dependency")
SHOES = REPO / "models" / "shoes.onnx"


def run(*args: str):
    return CliRunner().invoke(build_app(), list(args))


def heic_bytes(im: Image.Image, quality: int = 90) -> bytes:
    """``im`` encoded as HEIC by libheif's own encoder (not through Pillow's registry)."""
    buf = io.BytesIO()
    pillow_heif.from_pillow(im.convert("RGB")).save(buf, quality=quality)
    return buf.getvalue()


def avif_bytes(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="AVIF", quality=quality)
    return buf.getvalue()


@pytest.fixture
def shoe_photo(tmp_path) -> Path:
    """A real shoe photo from ../shared when present, else a generated one (the same label is all
    that is asserted)."""
    shared = sorted((SHARED_DATASETS / "shoes" / "nike").glob("*.jpg"))[:1]
    if shared:
        return shared[0]
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:240, 0:320]
    arr = np.stack([(x * 0.8) % 256, (y * 1.1) % 256, (x + y) % 256], axis=2) + rng.normal(0, 6, (240, 320, 3))
    path = tmp_path / "generated.jpg"
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=95)
    return path


def test_avif_is_decoded_by_this_pillow():
    assert features.check("avif"), "Pillow >= 11.3 wheels decode AVIF; pyproject pins that range"


def test_heic_and_avif_scan_with_the_label_of_their_jpeg(shoe_photo, tmp_path):
    with Image.open(shoe_photo) as im:
        (tmp_path / "photo.heic").write_bytes(heic_bytes(im))
        (tmp_path / "photo.avif").write_bytes(avif_bytes(im))
    assert (tmp_path / "photo.heic").read_bytes()[4:12] == b"ftypheic"
    result = run("scan", "-m", str(SHOES), "-f", "jsonl", str(shoe_photo), str(tmp_path / "photo.heic"),
                 str(tmp_path / "photo.avif"))
    assert result.exit_code == 0, result.stderr
    import json

    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 3 and records[0]["status"] != "error"
    # the same answer (a generated photo, without ../shared, may be "unknown" to the shoes model:
    # then the same unknown, with the same best guess)
    assert len({(r["status"], r["label"], r["top"][0]["label"]) for r in records}) == 1, records
    assert all(abs(r["top"][0]["probability"] - records[0]["top"][0]["probability"]) < 0.1 for r in records)


def test_folder_of_heic_photos_scans_and_counts_what_it_skips(shoe_photo, tmp_path):
    folder = tmp_path / "camera-roll"
    folder.mkdir()
    with Image.open(shoe_photo) as im:
        for i, quality in enumerate((70, 80, 90)):
            (folder / f"IMG_{i:04d}.HEIC").write_bytes(heic_bytes(im, quality))
    (folder / "notes.txt").write_text("not a photo")
    (folder / "clip.mov").write_bytes(b"\0\0\0\x14ftypqt  ")
    (folder / "album.xmp").write_text("<x/>")
    result = run("scan", "-m", str(SHOES), "-f", "csv", str(folder))
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [Path(r["file"]).name for r in rows] == ["IMG_0000.HEIC", "IMG_0001.HEIC", "IMG_0002.HEIC"]
    assert all(r["status"] in ("ok", "unknown") and r["top"] for r in rows), rows
    assert "3 files skipped: not images" in result.stderr


def test_heic_feeds_training_data_and_the_feedback_inbox(shoe_photo, tmp_path):
    from tagteller.feedback import verify_image
    from tagteller.imaging import prepare
    from tagteller.preprocessing import Preprocessing

    with Image.open(shoe_photo) as im:
        data = heic_bytes(im)
        avif = avif_bytes(im)
    (tmp_path / "nike").mkdir()
    (tmp_path / "nike" / "a.heic").write_bytes(data)
    (tmp_path / "nike" / "b.avif").write_bytes(avif)
    dataset = FolderLayout().load(tmp_path)
    assert sorted(s.key for s in dataset.samples) == ["nike/a.heic", "nike/b.avif"]
    for sample in dataset.samples:  # the training pipeline decodes with prepare
        assert prepare(sample.source, (32, 32), Preprocessing()).shape == (32, 32, 3)
    assert verify_image(data) == "heic"
    assert verify_image(avif) == "avif"


def test_the_page_scans_a_heic_upload(tmp_path, monkeypatch, shoe_photo):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tagteller.engine import Engine
    from tagteller.serve.app import create_app
    from tests.test_serve_api import register_serve_domains

    register_serve_domains(tmp_path, monkeypatch)
    red = Image.new("RGB", (120, 90), (230, 20, 20))
    with TestClient(create_app(engine=Engine(intra_threads=1))) as client:
        for data in (heic_bytes(red), avif_bytes(red)):
            response = client.post("/v1/scan", params={"domain": "colours"}, content=data,
                                   headers={"content-type": "application/octet-stream"})
            assert response.status_code == 200, response.text
            assert response.json()["label"] == "red"


def test_one_extension_list_and_format_list():
    from tagteller.feedback import FORMAT_EXTENSIONS
    from tagteller.imaging import IMAGE_EXTENSIONS, PHOTO_FORMATS

    assert {".heic", ".heif", ".avif", ".jpg"} <= IMAGE_EXTENSIONS
    assert {"AVIF", "HEIF"} <= set(PHOTO_FORMATS)  # what the page lists as accepted
    assert set(PHOTO_FORMATS) <= set(FORMAT_EXTENSIONS)  # every decoded format can be filed as feedback
    assert {f".{ext}" for ext in FORMAT_EXTENSIONS.values()} <= IMAGE_EXTENSIONS  # and read back by training
    import tagteller.datasets
    import tagteller.sources

    assert tagteller.datasets.IMAGE_EXTENSIONS is IMAGE_EXTENSIONS
    assert tagteller.sources.IMAGE_EXTENSIONS is IMAGE_EXTENSIONS


def test_a_jpeg_scan_never_imports_pillow_heif(shoe_photo):
    """The HEIF opener is registered on the first HEIF file, so a JPEG scan's cold start does not
    pay for it."""
    code = ("import sys; from tagteller.cli import main; sys.argv = ['tagteller', 'scan', '-m', sys.argv[1], "
            "sys.argv[2]]\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('LOADED' if 'pillow_heif' in sys.modules else 'NOT LOADED')")
    out = subprocess.run([sys.executable, "-c", code, str(SHOES), str(shoe_photo)], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "NOT LOADED", out.stdout + out.stderr


def test_feedback_from_a_folder_counts_what_it_skips(shoe_photo, tmp_path, monkeypatch):
    monkeypatch.setenv("TAGTELLER_PLUGINS", "shoes")
    folder = tmp_path / "to-file"
    folder.mkdir()
    with Image.open(shoe_photo) as im:
        (folder / "IMG_1.HEIC").write_bytes(heic_bytes(im))
    (folder / "notes.txt").write_text("not a photo")
    result = run("feedback", "add", "--domain", "shoes", str(folder), "nike")
    assert result.exit_code == 0, result.output
    assert "IMG_1.HEIC: filed" in result.stdout
    assert "1 file skipped: not images" in result.stderr


def test_a_pillow_without_avif_decoding_says_so(monkeypatch):
    import PIL.AvifImagePlugin

    from tagteller import imaging
    from tagteller.errors import ImageError

    red = Image.new("RGB", (40, 30), (230, 20, 20))
    data = avif_bytes(red)
    monkeypatch.setattr(PIL.AvifImagePlugin, "SUPPORTED", False)  # as in a Pillow built without libavif
    monkeypatch.setattr(imaging, "_avif_decodes", lambda: False)
    with pytest.raises(ImageError, match="this Pillow cannot decode AVIF"):
        imaging.open_image(data)


def test_a_heic_whose_major_brand_is_mif1_decodes(shoe_photo):
    """Pillow's AVIF plugin claims ``mif1`` files too; a HEIC labelled so still reaches pillow-heif."""
    from tagteller import imaging

    with Image.open(shoe_photo) as im:
        data = bytearray(heic_bytes(im))
    data[8:12] = b"mif1"
    with imaging.open_image(bytes(data)) as opened:
        assert opened.format == "HEIF"


def test_a_jpeg_scan_loads_only_pillows_common_plugins(shoe_photo):
    code = ("import sys; from tagteller.cli import main; sys.argv = ['tagteller', 'scan', '-m', sys.argv[1], "
            "sys.argv[2]]\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('PIL.') and m.endswith('ImagePlugin')))")
    out = subprocess.run([sys.executable, "-c", code, str(SHOES), str(shoe_photo)], capture_output=True, text=True,
                         check=True, timeout=120)
    loaded = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert "PIL.AvifImagePlugin" not in loaded and "PIL.WebPImagePlugin" not in loaded, loaded
