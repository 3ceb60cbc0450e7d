#!/usr/bin/env python
"""Fuzzing harness for the two parsers that read untrusted input: image decoding and model metadata.

Owns the hypothesis strategies and the properties checked on them:

- ``image-bytes``: :func:`tagteller.imaging.prepare` on arbitrary bytes;
- ``image-mutations``: ``prepare`` on valid PNG, JPEG, GIF, WebP, TIFF and BMP files (made here
  with Pillow) after byte flips, overwritten integers, insertions, deletions, truncation, and
  PNG chunk edits with the CRC fixed up (so the mutation reaches the decoder);
- ``metadata``: :func:`tagteller.modelfile.parse_metadata` on arbitrary string dicts and on valid
  metadata with JSON-ish values swapped in at any depth.

The property: each call either succeeds with a well-formed result or raises a
:class:`tagteller.errors.TagtellerError` subclass (``ImageError``/``ModelError``); anything else is
a crash. ``tests/test_fuzz.py`` runs these for a bounded number of cases; this script runs them for
longer and prints, per target, the cases run and the distinct crashes found (saving one input per
crash under ``--crashes``)::

    .venv/bin/python scripts/fuzz.py --examples 10000            # every target, 10000 cases each
    .venv/bin/python scripts/fuzz.py --target metadata --examples 50000 --seed 7

Exit status: 0 when no crash was found, 1 otherwise.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import time
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing (an installed tagteller wins)
    sys.path.append(str(REPO))

from tagteller import imaging, modelfile  # noqa: E402  (called through the modules: tests plant bugs)
from tagteller.errors import TagtellerError  # noqa: E402
from tagteller.modelfile import ModelInfo  # noqa: E402
from tagteller.preprocessing import Preprocessing  # noqa: E402

# -- seeds: small valid images of each format tagteller reads ------------------------------------


@lru_cache(maxsize=1)
def seed_images() -> dict[str, bytes]:
    """Valid image files (a few hundred bytes each) to mutate, by a descriptive name."""
    from PIL import Image

    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), "RGB")
    rgba = Image.fromarray(rng.integers(0, 255, (12, 16, 4), dtype=np.uint8), "RGBA")
    grey16 = Image.fromarray(rng.integers(0, 65535, (12, 16), dtype=np.uint16))

    def save(im: Any, fmt: str, **kw: Any) -> bytes:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    frames = [rgb.convert("P"), Image.new("P", rgb.size, 3)]
    return {
        "png-rgb": save(rgb, "PNG"),
        "png-rgba": save(rgba, "PNG"),
        "png-palette-transparent": save(rgb.convert("P"), "PNG", transparency=0),
        "png-16bit": save(grey16, "PNG"),
        "png-la": save(rgba.convert("LA"), "PNG"),
        "jpeg-rgb": save(rgb, "JPEG", quality=80),
        "jpeg-progressive": save(rgb, "JPEG", progressive=True),
        "jpeg-grey": save(rgb.convert("L"), "JPEG"),
        "jpeg-cmyk": save(rgb.convert("CMYK"), "JPEG"),
        "jpeg-exif-rotated": save(rgb, "JPEG", exif=exif.tobytes()),
        "gif-animated": save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50),
        "gif-transparent": save(rgb.convert("P"), "GIF", transparency=2),
        "webp-lossless": save(rgba, "WEBP", lossless=True),
        "webp-lossy": save(rgb, "WEBP", quality=50),
        "tiff-raw": save(rgb, "TIFF"),
        "tiff-lzw": save(rgba, "TIFF", compression="tiff_lzw"),
        "bmp": save(rgb, "BMP"),
    }


# -- strategies ----------------------------------------------------------------------------------

INTERESTING_INTS = (0, 1, 2, 7, 8, 16, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """Split a PNG into (type, data) chunks; None when it is not a well-formed PNG."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    chunks, pos = [], 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        chunks.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def _png_join(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = [b"\x89PNG\r\n\x1a\n"]
    for kind, body in chunks:
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    return b"".join(out)


@st.composite
def _mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """One random edit of ``data``."""
    buf = bytearray(data)
    n = len(buf)
    pos = draw(st.integers(0, max(0, n - 1)))
    kind = draw(st.sampled_from(["flip", "byte", "int", "insert", "delete", "truncate", "duplicate", "png-chunk"]))
    if n == 0:
        return bytes(draw(st.binary(max_size=16)))
    if kind == "flip":
        buf[pos] ^= 1 << draw(st.integers(0, 7))
    elif kind == "byte":
        buf[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFE, 0xFF]) | st.integers(0, 255))
    elif kind == "int":
        width, order = draw(st.sampled_from([(2, ">H"), (2, "<H"), (4, ">I"), (4, "<I")]))
        value = draw(st.sampled_from(INTERESTING_INTS)) & ((1 << (8 * width)) - 1)
        buf[pos:pos + width] = struct.pack(order, value)
    elif kind == "insert":
        buf[pos:pos] = draw(st.binary(min_size=1, max_size=64))
    elif kind == "delete":
        del buf[pos:pos + draw(st.integers(1, 64))]
    elif kind == "truncate":
        del buf[pos:]
    elif kind == "duplicate":
        end = min(n, pos + draw(st.integers(1, 256)))
        buf[pos:pos] = buf[pos:end]
    else:  # edit one PNG chunk and fix its CRC, so the edit gets past the checksum
        chunks = _png_chunks(bytes(buf))
        if chunks:
            i = draw(st.integers(0, len(chunks) - 1))
            kind_, body = chunks[i]
            body = draw(_mutation(body)) if body else draw(st.binary(max_size=32))
            if kind_ == b"IDAT" and draw(st.booleans()):  # edit the inflated pixels, not the zlib stream
                try:
                    raw = bytearray(zlib.decompress(chunks[i][1]))
                    if raw:
                        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
                    body = zlib.compress(bytes(raw))
                except zlib.error:
                    pass  # the chunk was already broken by an earlier edit: keep the byte-level edit
            chunks[i] = (kind_, body)
            return _png_join(chunks)
    return bytes(buf)


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A seed image with one to eight random edits."""
    seeds = seed_images()
    data = seeds[draw(st.sampled_from(sorted(seeds)))]
    for _ in range(draw(st.integers(1, 8))):
        data = draw(_mutation(data))
    return data


def arbitrary_bytes() -> st.SearchStrategy[bytes]:
    """Any bytes, sometimes starting with a real format's magic number so its parser is reached."""
    magic = st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"GIF87a", b"RIFF\x00\x00\x00\x00WEBP",
                             b"II*\x00", b"MM\x00*", b"BM", b"%!PS-Adobe-3.0 EPSF-3.0\n"])
    return st.tuples(magic, st.binary(max_size=2048)).map(lambda parts: parts[0] + parts[1])


def preprocessings() -> st.SearchStrategy[Preprocessing]:
    return st.builds(
        Preprocessing,
        color_mode=st.sampled_from(["RGB", "L"]),
        resize=st.sampled_from(["stretch", "pad", "crop"]),
        invert=st.sampled_from(["never", "always", "auto"]),
        trim=st.booleans(),
        trim_threshold=st.integers(0, 255),
        trim_margin=st.floats(0, 0.5),
        background=st.sampled_from(["white", "black"]),
    )


def input_sizes() -> st.SearchStrategy[tuple[int, int]]:
    return st.tuples(st.integers(1, 48), st.integers(1, 48))


#: Scalars that have broken parsers before: infinities, NaN, ints past Python's digit limit for
#: str(), numbers as strings, booleans where numbers are expected, path tricks, code.
NASTY_SCALARS = st.sampled_from([
    float("inf"), float("-inf"), float("nan"), 1e308, -1, 0, 2**63, True, False, None, "", "12", "1e999",
    "RGB", "L", "NHWC", "../x", "/etc/passwd", "a\x00b", "__import__('os').system('false')", [], {}, [0, 255],
])

json_values = st.recursive(
    NASTY_SCALARS | st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=12,
)


#: Whole metadata values that are not JSON a writer would produce: numbers over Python's digit
#: limit, nesting past the recursion limit, non-standard constants, truncated documents.
NASTY_TEXTS = st.sampled_from([
    "1" + "0" * 5000, '{"height": 1' + "0" * 5000 + ', "width": 8}', "[" * 5000, "{" * 5000, "NaN", "-Infinity",
    '{"height": 1e999, "width": 1e999}', '["red", "green"', "\ud800", '"\ud800"', "null", "true", "{}", "[]",
])


def valid_metadata() -> dict[str, str]:
    return ModelInfo(domain="colours", labels=("red", "green", "blue"), height=32, width=32, color_mode="RGB",
                     preprocessing=Preprocessing(), metrics={"val_accuracy": 1.0}).to_metadata()


def _as_metadata_value(value: Any) -> Any:
    return value if isinstance(value, str) else json.dumps(value, allow_nan=True)


@st.composite
def _edited_json(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one element (at any depth of a JSON object/list) replaced, added or removed."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)) | st.text(max_size=12))
        out = dict(value)
        action = draw(st.sampled_from(["replace", "descend", "delete"]))
        if action == "delete":
            out.pop(key, None)
        elif action == "descend" and key in out:
            out[key] = draw(_edited_json(out[key]))
        else:
            out[key] = draw(json_values)
        return out
    if isinstance(value, list) and value and draw(st.booleans()):
        out = list(value)
        i = draw(st.integers(0, len(out) - 1))
        out[i] = draw(_edited_json(out[i]))
        return out
    return draw(json_values)


@st.composite
def metadata_dicts(draw: st.DrawFn) -> dict[Any, Any]:
    """Metadata as onnxruntime would hand it over (strings), now and then with non-string values."""
    known = sorted(valid_metadata())
    if draw(st.integers(0, 4)) == 0:  # a dict of anything
        keys = st.sampled_from(known) | st.text(max_size=16)
        return draw(st.dictionaries(keys, st.text(max_size=40) | json_values.map(_as_metadata_value) | json_values,
                                    max_size=12))
    meta: dict[Any, Any] = dict(valid_metadata())
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(known))
        action = draw(st.sampled_from(["edit-json", "edit-json", "edit-json", "text", "raw", "delete"]))
        if action == "delete":
            meta.pop(key, None)
        elif action == "text":
            meta[key] = draw(st.text(max_size=40) | NASTY_TEXTS)
        elif action == "raw":
            meta[key] = draw(json_values)
        else:
            try:
                decoded = json.loads(meta.get(key, "null"))
            except (TypeError, ValueError, RecursionError):  # an earlier edit made it non-JSON
                decoded = None
            meta[key] = _as_metadata_value(draw(_edited_json(decoded)))
    return meta


# -- properties ----------------------------------------------------------------------------------


def _check_one_line(exc: TagtellerError) -> None:
    message = str(exc)
    assert message.strip() and message.isprintable(), f"not a printable one-line reason: {message!r}"


def check_prepare(data: bytes, size: tuple[int, int], pre: Preprocessing) -> str:
    """``prepare`` returns a finite float32 (H, W, C) array in [0, 255], or raises a TagtellerError
    with a one-line reason. Returns ``"accepted"`` or ``"refused"``; anything else is a crash."""
    try:
        out = imaging.prepare(data, size, pre)
    except TagtellerError as exc:
        _check_one_line(exc)
        return "refused"
    assert out.dtype == np.float32, out.dtype
    assert out.shape == (size[0], size[1], pre.channels), (out.shape, size, pre.channels)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255
    return "accepted"


_PROBE_IMAGE = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)


def check_parse(meta: dict[Any, Any]) -> str:
    """``parse_metadata`` returns a usable ModelInfo (it round-trips and its preprocessing runs), or
    raises a TagtellerError with a one-line reason. Returns ``"accepted"`` or ``"refused"``; anything
    else is a crash."""
    try:
        info = modelfile.parse_metadata(meta, where="fuzz.onnx")
    except TagtellerError as exc:
        _check_one_line(exc)
        return "refused"
    again = modelfile.parse_metadata(info.to_metadata(), where="round-trip")
    # to_metadata fills in an empty creation time and writer version; NaN metrics compare as text
    expected = replace(info, created=info.created or again.created,
                       tagteller_version=info.tagteller_version or again.tagteller_version)
    assert json.dumps(asdict(again), sort_keys=True) == json.dumps(asdict(expected), sort_keys=True)
    json.dumps(info.as_dict(), allow_nan=True)
    out = imaging.prepare(_PROBE_IMAGE, info.input_size, info.preprocessing)
    assert out.shape == (info.height, info.width, info.channels)
    return "accepted"


# -- targets and the long-running driver ---------------------------------------------------------

TARGETS: dict[str, tuple[st.SearchStrategy, Callable[[Any], str]]] = {
    "image-bytes": (st.tuples(arbitrary_bytes(), input_sizes(), preprocessings()), lambda args: check_prepare(*args)),
    "image-mutations": (st.tuples(mutated_images(), input_sizes(), preprocessings()), lambda args: check_prepare(*args)),
    "metadata": (metadata_dicts(), check_parse),
}


def _crash_key(exc: BaseException) -> str:
    """Exception type plus the innermost tagteller (else last) frame: one key per distinct bug."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/tagteller/" in f.filename.replace("\\", "/")] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(exc).__name__} at {where}"


def run_target(name: str, examples: int, seed: int, crash_dir: Path | None) -> tuple[Counter, dict[str, str]]:
    """Run ``examples`` cases of one target; return (outcome counts, {crash key: message})."""
    strategy, check = TARGETS[name]
    outcomes: Counter = Counter()
    crashes: dict[str, str] = {}

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def body(case: Any) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outcomes[check(case)] += 1
        except Exception as exc:  # noqa: BLE001 - every non-TagtellerError is a crash to record
            outcomes["crashed"] += 1
            key = _crash_key(exc)
            if key not in crashes:
                crashes[key] = f"{type(exc).__name__}: {str(exc)[:200]}"
                if crash_dir is not None:
                    crash_dir.mkdir(parents=True, exist_ok=True)
                    stem = crash_dir / f"{name}-{len(crashes)}"
                    if isinstance(case, tuple) and isinstance(case[0], bytes):
                        stem.with_suffix(".bin").write_bytes(case[0])
                    else:
                        stem.with_suffix(".txt").write_text(repr(case)[:100_000], encoding="utf-8")

    body()
    return outcomes, crashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="cases per target (default 2000)")
    parser.add_argument("--target", choices=["all", *TARGETS], default="all")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (runs are reproducible)")
    parser.add_argument("--crashes", type=Path, default=None, help="folder to save one input per distinct crash")
    args = parser.parse_args(argv)

    names = list(TARGETS) if args.target == "all" else [args.target]
    total_cases = total_crashes = 0
    for name in names:
        start = time.perf_counter()
        outcomes, crashes = run_target(name, args.examples, args.seed, args.crashes)
        took = time.perf_counter() - start
        cases = sum(outcomes.values())
        total_cases += cases
        total_crashes += len(crashes)
        detail = ", ".join(f"{outcomes[k]} {k}" for k in ("accepted", "refused", "crashed"))
        print(f"{name}: {cases} cases in {took:.1f}s ({detail}), {len(crashes)} distinct crash(es)", flush=True)
        for key, message in crashes.items():
            print(f"  CRASH {key}: {message}")
    print(f"total: {total_cases} cases, {total_crashes} distinct crash(es)")
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
