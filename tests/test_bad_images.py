"""The bad-image corpus: every odd or broken file a folder may hold either scans correctly or becomes
a per-file error record (in table, JSON, JSONL and CSV output); the batch carries on, the exit code
is 1, and stderr names each failed file with its reason.

The corpus is written by the tests (:data:`CORPUS`); colours are judged with the colour model from
``tests/builders.py`` (red/green/blue by mean colour) and grey images with a light/dark model,
since a grey image is a three-way tie for the colour model.
"""

from __future__ import annotations

import csv
import io
import json
import os
import select
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tagteller.cli import build_app
from tagteller.engine import Engine, display_name
from tagteller.errors import ImageError
from tagteller.imaging import prepare
from tagteller.preprocessing import Preprocessing
from tests.builders import colour_model

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NOBODY = 65534
TAGTELLER = Path(sys.executable).parent / "tagteller"


# -- writing the corpus ------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_header_only(width: int, height: int, colour_type: int = 2) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` and that carries no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


def png_zeros(width: int, height: int) -> bytes:
    """A complete, valid greyscale PNG of ``width`` x ``height`` black pixels: a few hundred KB that
    decode to width*height bytes (compressed row by row, never held whole in memory)."""
    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 + pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_rgb16(width: int, height: int, rgb16: tuple[int, int, int]) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one) filled with ``rgb16``."""
    row = b"\x00" + struct.pack(">HHH", *rgb16) * width
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(row * height))
            + _png_chunk(b"IEND", b""))


def gif_header_only(width: int, height: int) -> bytes:
    """A GIF whose screen and only image declare ``width`` x ``height``, with no pixel data."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
    return screen + b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x08\x00\x3b"


def jpeg_claiming(width: int, height: int) -> bytes:
    """A valid small JPEG with its frame header (SOF0) edited to declare ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), RED).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _save(image: Image.Image, **options) -> Callable[[Path], None]:
    return lambda path: image.save(path, **options)


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _alpha_png(path: Path) -> None:
    # Three quarters fully transparent *blue*, one quarter opaque red: on the white background the
    # picture is red and white; ignoring alpha would make it mostly blue.
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., 2] = 255
    rgba[:, :16] = (255, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(path)


def _palette_transparent_png(path: Path) -> None:
    # Same picture as _alpha_png, as a palette image whose entry 0 (blue) is transparent.
    index = np.zeros((48, 64), np.uint8)
    index[:, :16] = 1
    im = Image.fromarray(index, "P")
    im.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    im.save(path, transparency=0)


def _truncated_jpeg(path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    path.write_bytes(data[: len(data) * 6 // 10])  # headers whole, scan data cut off


def _exif_rotated_jpeg(path: Path) -> None:
    write_oriented_jpeg(path, 6)


def _animated_gif(path: Path) -> None:
    # The first frame is red; the later (and longer) ones blue.
    frames = [Image.new("RGB", (64, 48), colour) for colour in (RED, BLUE, BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[50, 500, 500], loop=0)


def gif_with_broken_second_frame(damage: str) -> bytes:
    """A GIF whose first frame is red and whose second frame is damaged: ``"cut"`` one byte into
    its image descriptor, or ``"short-extension"`` (a 2-byte graphic control block). Pillow's
    ``is_animated`` raised struct.error / IndexError on these (found by scripts/fuzz.py); tagteller
    now never parses frames after the first."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), RED).save(buf, "GIF", save_all=True, append_images=[Image.new("RGB", (16, 12), BLUE)])
    data = buf.getvalue()
    control = data.rindex(b"\x21\xf9\x04")  # the second frame's graphic control extension
    if damage == "cut":
        return data[: data.index(b",", control + 8) + 2]
    return data[:control] + b"\x21\xf9\x02" + data[control + 3:control + 5] + b"\x00" + data[control + 8:]


def _unreadable(path: Path) -> None:
    Image.new("RGB", (64, 48), RED).save(path, "PNG")
    path.chmod(0)


def _symlink(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


@dataclass(frozen=True)
class Case:
    """One corpus entry: how to write it and what scanning it must give."""

    name: str  # file name; a non-UTF-8 name is carried as str with surrogate escapes (os.fsdecode)
    write: Callable[[Path], None]
    label: str | None = None  # expected top label, when it must scan
    reason: str | None = None  # words the error must contain, when it must fail
    grey: bool = False  # judged with the light/dark model
    in_folder: bool = True  # found by walking the corpus folder (else only when named explicitly)

    @property
    def fails(self) -> bool:
        return self.reason is not None


CORPUS: list[Case] = [
    Case("zero-bytes.jpg", _bytes(b""), reason="empty file (0 bytes)"),
    Case("truncated.jpg", _truncated_jpeg, reason="image file is truncated"),
    Case("random-bytes.jpg", _bytes(np.random.default_rng(1).bytes(4096)), reason="not a recognised image format"),
    Case("text-named.jpg", _bytes(b"a shopping list, not a photo\n"), reason="not a recognised image format"),
    Case("notes.txt", _bytes(b"named on the command line\n"), reason="not a recognised image format", in_folder=False),
    Case("alpha.png", _alpha_png, label="red"),
    Case("palette.png", _save(Image.new("RGB", (64, 48), GREEN).convert("P")), label="green"),
    Case("palette-transparent.png", _palette_transparent_png, label="red"),
    Case("rgb-16bit.png", _bytes(png_rgb16(64, 48, (0, 0, 65535))), label="blue"),
    # 10000/65535 is dark; a decoder that clipped 16-bit values to 255 would call it light
    Case("grey-16bit.png", _save(Image.fromarray(np.full((48, 64), 10000, np.uint16))), label="dark", grey=True),
    Case("grey-dark.jpg", _save(Image.new("L", (64, 48), 40)), label="dark", grey=True),
    Case("grey-light.jpg", _save(Image.new("L", (64, 48), 220)), label="light", grey=True),
    Case("cmyk.jpg", _save(Image.new("CMYK", (64, 48), (0, 255, 255, 0))), label="red"),
    Case("exif-rotated.jpg", _exif_rotated_jpeg),  # scans; orientation: test_exif_orientation_is_honoured
    Case("animated.gif", _animated_gif, label="red"),
    Case("gif-second-frame-cut.gif", _bytes(gif_with_broken_second_frame("cut")), label="red"),
    Case("gif-second-frame-short-block.gif", _bytes(gif_with_broken_second_frame("short-extension")), label="red"),
    Case("green.webp", _save(Image.new("RGB", (64, 48), GREEN), lossless=True), label="green"),
    Case("blue.tiff", _save(Image.new("RGB", (64, 48), BLUE), compression="tiff_lzw"), label="blue"),
    Case("bomb.png", _bytes(png_header_only(100_000, 100_000)), reason="decompression bomb"),
    Case("over-limit.png", lambda p: p.write_bytes(png_zeros(9000, 9000)), reason="over the 80 MP limit"),
    Case("x.jpg", lambda p: p.mkdir(), reason="no image files in this folder", in_folder=False),
    # root reads any file whatever its mode: then it scans (test_unreadable_file covers the error)
    Case("unreadable.png", _unreadable, **({"label": "red"} if IS_ROOT else {"reason": "permission denied"})),
    Case("loop", _symlink(".")),  # a folder symlink to its own folder: never followed, never listed
    Case("self-loop.jpg", _symlink("self-loop.jpg"), reason="too many levels of symbolic links"),
    Case("dangling.jpg", _symlink("no-such-photo.jpg"), reason="no such file or directory"),
    Case("fifo.jpg", lambda p: os.mkfifo(p), reason="not a regular file"),  # reading would block
    Case(os.fsdecode(b"caf\xe9-latin1.png"), _save(Image.new("RGB", (64, 48), RED), format="PNG"), label="red"),
    Case(os.fsdecode(b"broken-\xff.jpg"), _bytes(b"\xff\xd8\xff\xe0 not really"), reason="cannot read image header"),
    # names that would break a line or drive the terminal are shown escaped (display_name)
    Case("line\nbreak.png", _save(Image.new("RGB", (64, 48), GREEN), format="PNG"), label="green"),
    Case("\x1b[2Jclear-screen.jpg", _bytes(b"not an image"), reason="not a recognised image format"),
]
CASES = {case.name: case for case in CORPUS}
LISTED = [c for c in CORPUS if c.name != "loop"]  # every case that yields a record somewhere


def write_oriented_jpeg(path: Path, orientation: int) -> None:
    """A JPEG that a viewer shows as QUADRANTS (after the EXIF ``orientation``): the stored pixels
    are the displayed ones transformed back, as the EXIF specification defines each orientation."""
    shown = quadrants()
    stored = {
        1: shown,
        2: shown[:, ::-1],  # mirrored left-right
        3: shown[::-1, ::-1],  # turned 180 degrees
        4: shown[::-1],  # mirrored top-bottom
        5: shown.transpose(1, 0, 2),  # mirrored along the main diagonal
        6: np.rot90(shown, 1),  # the viewer turns it 90 degrees clockwise
        7: np.rot90(shown, 2).transpose(1, 0, 2),  # mirrored along the other diagonal
        8: np.rot90(shown, -1),  # the viewer turns it 90 degrees anticlockwise
    }[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(path, "JPEG", quality=95, exif=exif.tobytes())


QUADRANT_COLOURS = {"top-left": RED, "top-right": BLUE, "bottom-left": GREEN, "bottom-right": (0, 0, 0)}


def quadrants(width: int = 64, height: int = 32) -> np.ndarray:
    """A wide image: left half red over green, right half blue over black."""
    out = np.zeros((height, width, 3), np.uint8)
    out[: height // 2, : width // 2] = RED
    out[: height // 2, width // 2:] = BLUE
    out[height // 2:, : width // 2] = GREEN
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """``<tmp>/corpus`` holding every :data:`CORPUS` file; tests run from ``<tmp>`` so that names in
    the output are short relative paths (``corpus/alpha.png``)."""
    folder = tmp_path_factory.mktemp("bad-images") / "corpus"
    folder.mkdir()
    for case in CORPUS:
        case.write(Path(os.fsdecode(os.path.join(os.fsencode(folder), os.fsencode(case.name)))))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad-images-models")
    return {
        "colour": colour_model(folder / "colours.onnx"),
        "grey": colour_model(folder / "grey.onnx", domain="greys", labels=("light", "dark"), color_mode="L"),
    }


@pytest.fixture
def in_corpus_parent(corpus, monkeypatch) -> Path:
    monkeypatch.chdir(corpus.parent)
    return Path("corpus")


def shown_name(case: Case) -> str:
    """How the CLI names a corpus file (relative, undecodable bytes escaped)."""
    return display_name(os.path.join("corpus", case.name))


# -- each file on its own, through the engine --------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    eng = Engine(intra_threads=1, decode_workers=2)
    yield eng
    eng.close()


@pytest.mark.parametrize("case", [c for c in LISTED if c.name != "x.jpg"], ids=lambda c: display_name(c.name))
def test_each_file_scans_or_fails_on_its_own(corpus, models, engine, case):
    loaded = engine.load(models["grey" if case.grey else "colour"])
    path = Path(os.fsdecode(os.path.join(os.fsencode(corpus), os.fsencode(case.name))))
    [result] = list(engine.scan(loaded, [path]))
    if case.fails:
        assert not result.ok and case.reason in result.error, result.error
        assert "\n" not in result.error
    else:
        assert result.ok, result.error
        if case.label:
            assert result.top.label == case.label, result.predictions


def test_directory_named_like_an_image(corpus, models, engine, in_corpus_parent):
    """Walking the corpus treats ``x.jpg/`` as the (empty) folder it is; the engine, handed it as
    a file, says it is a directory; named on the command line, it is a folder with no images."""
    loaded = engine.load(models["colour"])
    [result] = list(engine.scan(loaded, [corpus / "x.jpg"]))
    assert result.error == "is a directory"
    proc = CliRunner().invoke(build_app(), ["scan", "--model", str(models["colour"]), "-f", "jsonl", "corpus/x.jpg"])
    assert proc.exit_code == 1
    assert [json.loads(line)["error"] for line in proc.stdout.splitlines()] == ["no image files in this folder"]
    assert "error: corpus/x.jpg: no image files in this folder" in proc.stderr


# -- the whole corpus through `tagteller scan`, in every output format --------------------------


def parse_records(fmt: str, stdout: str) -> list[dict]:
    """Records from `tagteller scan` output: ``file``, ``status``, ``label`` and ``error``."""
    if fmt == "json":
        return json.loads(stdout)
    if fmt == "jsonl":
        return [json.loads(line) for line in stdout.splitlines()]
    if fmt == "csv":
        return [dict(row, label=row["label"] or None, error=row["error"] or None)
                for row in csv.DictReader(io.StringIO(stdout))]
    lines = stdout.splitlines()  # table: FILE, RESULT, then CONFIDENCE or the error (widths from the data)
    assert lines[0].split() == ["FILE", "RESULT", "CONFIDENCE", "OTHERS"]
    result_at, rest_at = lines[0].index("RESULT"), lines[0].index("CONFIDENCE")
    records = []
    for line in lines[1:]:
        name, result, rest = line[:result_at].rstrip(), line[result_at:rest_at].rstrip(), line[rest_at:]
        failed = result == "ERROR"
        records.append({"file": name, "status": "error" if failed else "ok",
                        "label": None if failed else result, "error": rest if failed else None})
    return records


def check_scan_output(cases: list[Case], proc, fmt: str) -> None:
    """Every case has exactly one record, right or with its reason; stderr names each failure."""
    assert proc.exit_code == 1, (proc.exit_code, proc.stderr)
    records = parse_records(fmt, proc.stdout)
    by_name = {r["file"]: r for r in records}
    assert len(by_name) == len(records), "a file was reported twice"
    assert set(by_name) == {shown_name(c) for c in cases}
    for case in cases:
        record = by_name[shown_name(case)]
        if case.fails:
            assert record["status"] == "error" and case.reason in record["error"], (case.name, record)
            assert f"error: {shown_name(case)}: {record['error']}" in proc.stderr.splitlines()
        else:
            assert record["status"] == "ok" and record["error"] is None, (case.name, record)
            if case.label:
                assert record["label"] == case.label, (case.name, record)
    failed = sum(c.fails for c in cases)
    assert proc.stderr.splitlines()[-1] == f"{failed} of {len(cases)} input(s) failed"
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
def test_scan_corpus_reports_every_file(models, in_corpus_parent, fmt):
    args = ["scan", "--model", str(models["colour"]), "--format", fmt, "--batch-size", "4",
            "corpus", "corpus/notes.txt", "corpus/x.jpg"]
    proc = CliRunner().invoke(build_app(), args)
    # grey images scan (a three-way tie for the colour model): their labels are checked below
    cases = [c if not c.grey else Case(c.name, c.write) for c in LISTED]
    check_scan_output(cases, proc, fmt)


def test_scan_corpus_with_grey_model_tells_light_from_dark(models, in_corpus_parent):
    proc = CliRunner().invoke(build_app(), ["scan", "--model", str(models["grey"]), "-f", "jsonl",
                                            "corpus", "corpus/notes.txt", "corpus/x.jpg"])
    cases = [c if c.grey or c.fails else Case(c.name, c.write) for c in LISTED]
    check_scan_output(cases, proc, "jsonl")


def test_scan_corpus_as_a_real_process(models, in_corpus_parent, tmp_path):
    """`python -m tagteller` in a C locale: JSON out, one stderr line per failure, exit 1."""
    env = dict(os.environ, TAGTELLER_HOME=str(tmp_path / "home"), LC_ALL="C")
    env.pop("PYTHONIOENCODING", None)
    proc = subprocess.run([sys.executable, "-m", "tagteller", "scan", "--model", str(models["colour"]), "-f", "json",
                           "corpus", "corpus/notes.txt", "corpus/x.jpg"],
                          capture_output=True, text=True, encoding="utf-8", env=env, timeout=120)
    proc.exit_code = proc.returncode  # the shape check_scan_output reads
    cases = [c if not c.grey else Case(c.name, c.write) for c in LISTED]
    check_scan_output(cases, proc, "json")


def test_console_script_survives_the_corpus(models, in_corpus_parent, tmp_path):
    proc = subprocess.run([str(TAGTELLER), "scan", "--model", str(models["colour"]), "-f", "csv", "corpus"],
                          capture_output=True, text=True, env=dict(os.environ, TAGTELLER_HOME=str(tmp_path / "h")),
                          timeout=120)
    assert proc.returncode == 1
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == sum(c.in_folder for c in LISTED)
    assert {r["file"] for r in rows if r["status"] == "error"} == {
        shown_name(c) for c in LISTED if c.fails and c.in_folder}
    assert "Traceback" not in proc.stderr


# -- the cases that need more than a record ----------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_honoured(tmp_path, orientation):
    """Colours land where a viewer shows them, for each of the eight EXIF orientations."""
    path = tmp_path / f"oriented-{orientation}.jpg"
    write_oriented_jpeg(path, orientation)
    arr = prepare(path, (32, 64), Preprocessing())
    assert arr.shape == (32, 64, 3)
    centres = {"top-left": arr[8, 16], "top-right": arr[8, 48], "bottom-left": arr[24, 16], "bottom-right": arr[24, 48]}
    for where, colour in QUADRANT_COLOURS.items():
        assert np.abs(centres[where] - np.array(colour)).max() < 40, (orientation, where, centres[where])


BOMB_CHILD = r"""
import json, resource, sys, time
from tagteller.errors import ImageError
from tagteller.imaging import prepare
from tagteller.preprocessing import Preprocessing
prepare(sys.argv[1], (32, 32), Preprocessing())  # warm up: Pillow loads its decoders
out = []
for path in sys.argv[2:]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        prepare(path, (32, 32), Preprocessing())
        reason = None
    except ImageError as exc:
        reason = str(exc)
    seconds = time.perf_counter() - start
    grew_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    out.append({"file": path, "reason": reason, "seconds": seconds, "grew_mib": grew_mib})
print(json.dumps(out))
"""


def test_decompression_bombs_are_refused_fast_without_decoding(tmp_path, corpus):
    """Declared sizes from 81 MP to 10 000 MP are refused from the header: in milliseconds, and the
    process's peak memory does not move (decoding over-limit.png alone would take 81 MB)."""
    (tmp_path / "bomb.gif").write_bytes(gif_header_only(65535, 65535))
    (tmp_path / "bomb.jpg").write_bytes(jpeg_claiming(65000, 65000))
    bombs = [corpus / "bomb.png", corpus / "over-limit.png", tmp_path / "bomb.gif", tmp_path / "bomb.jpg"]
    assert (corpus / "over-limit.png").stat().st_size < 1_000_000  # a real bomb: small file, 81 MP inside
    proc = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(corpus / "palette.png"), *map(str, bombs)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    for result in results:
        assert result["reason"] and ("decompression bomb" in result["reason"] or "MP limit" in result["reason"]), result
        assert result["seconds"] < 0.5, result
        assert result["grew_mib"] < 40, result


def _prepare_as(uid: int, path: Path) -> str:
    """Run ``prepare(path)`` in a forked child that has dropped to ``uid``; return its outcome."""
    prepare(path.parent / "readable.png", (8, 8), Preprocessing())  # Pillow's decoders load here, not in the child
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.setgid(uid)
            os.setuid(uid)
            try:
                prepare(path, (8, 8), Preprocessing())
                outcome = "decoded"
            except ImageError as exc:
                outcome = f"ImageError: {exc}"
            except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
                outcome = f"{type(exc).__name__}: {exc}"
            os.write(write_end, outcome.encode("utf-8", "backslashreplace"))
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 30)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the unprivileged child did not answer within 30 s")
        return os.read(read_end, 4096).decode()
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)


def test_unreadable_file_is_an_error():
    """A file the user may not read is a one-line per-file error. Root reads anything, so as root the
    check runs in a forked child that has dropped to the ``nobody`` user."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)  # the unprivileged child must be able to look inside
        Image.new("RGB", (8, 8), RED).save(folder / "readable.png")
        locked = folder / "locked.png"
        _unreadable(locked)
        assert stat.S_IMODE(locked.stat().st_mode) == 0
        if IS_ROOT:
            outcome = _prepare_as(NOBODY, locked)
        else:
            try:
                prepare(locked, (8, 8), Preprocessing())
                outcome = "decoded"
            except ImageError as exc:
                outcome = f"ImageError: {exc}"
    assert outcome == "ImageError: permission denied"


def test_symlink_loops_do_not_trap_folder_walks_or_globs(models, tmp_path, monkeypatch):
    """Two folder symlinks back to their parent make ``glob.glob('**')`` enumerate 2**40 paths; the
    folder walk and tagteller's glob follow neither and list each real file once."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (16, 16), GREEN).save(folder / "sub" / "leaf.png")
    (folder / "loop-a").symlink_to(".")
    (folder / "loop-b").symlink_to(".")
    (folder / "sub" / "up").symlink_to("..")
    monkeypatch.chdir(tmp_path)
    for pattern in ("photos", "photos/**/*.png", "photos/*", "photos/**"):
        proc = CliRunner().invoke(build_app(), ["scan", "--model", str(models["colour"]), "-f", "jsonl", pattern])
        assert proc.exit_code == 0, (pattern, proc.stderr)
        records = [json.loads(line) for line in proc.stdout.splitlines()]
        assert [(Path(r["file"]).name, r["label"]) for r in records] == [("leaf.png", "green")], pattern


def test_non_utf8_name_is_escaped_in_every_format(corpus, models, in_corpus_parent):
    case = CASES[os.fsdecode(b"caf\xe9-latin1.png")]
    name = shown_name(case)
    assert name == "corpus/caf\\udce9-latin1.png"
    arg = os.path.join("corpus", case.name)
    for fmt in ("table", "json", "jsonl", "csv"):
        proc = CliRunner().invoke(build_app(), ["scan", "--model", str(models["colour"]), "-f", fmt, arg])
        assert proc.exit_code == 0, proc.stderr
        [record] = parse_records(fmt, proc.stdout)
        assert (record["file"], record["label"]) == (name, "red")
