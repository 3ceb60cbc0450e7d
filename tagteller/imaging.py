"""Decoding a photo into a model input array with Pillow, as :class:`Preprocessing` says.

Owns everything between bytes on disk and a float32 ``(H, W, C)`` array in [0, 255]: opening
safely (size limits, decompression bombs refused before decoding), JPEG draft downscaling, EXIF
orientation, first frame of animations, transparency, 16-bit and CMYK images, colour mode,
auto-inversion, trimming and the resize. Errors are :class:`~tagteller.errors.ImageError` with a
one-line reason.

It is the one opener of every image tagteller reads (the CLI, the page's uploads, training data,
feedback) and :data:`IMAGE_EXTENSIONS` the one list of the file names folder walks keep. Phone
photos: AVIF with Pillow's own decoder (Pillow >= 11.3), HEIC/HEIF with pillow-heif, whose opener
is registered the first time a file that Pillow cannot identify starts with an ISO-BMFF ``ftyp``
box, so a scan of JPEGs never imports it (about 20 ms).

Speed (measured in ``benchmarks/``, see BENCHMARKS.md): a phone photo is decoded by libjpeg at 1/2,
1/4 or 1/8 scale (``draft``) to the smallest size that still covers twice the model input, which
leaves a JPEG's entropy decoding as most of its cost; no step copies the image when it has nothing
to do (EXIF transpose in place, no conversion to the mode it already has). ``prepare`` runs in
the engine's decode threads: Pillow releases the GIL while it decodes and resizes.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tagteller.errors import ImageError
from tagteller.preprocessing import Preprocessing

#: Largest image accepted, in pixels (width x height, as declared in the header). Anything larger
#: is refused before it is decoded. 80 MP covers any phone or DSLR photo.
MAX_PIXELS = 80_000_000
#: Largest file read, in bytes.
MAX_FILE_BYTES = 100 * 1024 * 1024
#: The pillow-heif format name (HEIC, the iPhone default, and other HEIF files).
HEIF_FORMAT = "HEIF"
#: Every format a photo is decoded from (Pillow format names), matching the photo extensions
#: tagteller scans (the JPEG decoder also opens a camera's multi-picture MPO files). Anything else
#: (EPS, which would run Ghostscript; PSD, SGI, FLI, ... rarely used and rarely hardened) is refused
#: as not a recognised image format. AVIF is Pillow's own decoder (libavif in its wheels since
#: 11.3); HEIF is pillow-heif's, registered on first use (see :func:`_heif_opener`).
PHOTO_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "AVIF", HEIF_FORMAT)
#: The ones Pillow has without pillow-heif: tried first, on every file.
_PILLOW_FORMATS = tuple(name for name in PHOTO_FORMATS if name != HEIF_FORMAT)
#: File extensions of the formats above: what folder scans and dataset layouts keep (anything else
#: in a scanned folder is counted as skipped). A file named explicitly is tried whatever its name.
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jfif", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp",
    ".avif", ".heic", ".heif", ".hif",
})

#: A JPEG is decoded at the smallest libjpeg scale (1/2, 1/4, 1/8) whose result is still at least
#: this many times the model input on each side. 2 keeps the answers of full-quality decoding:
#: 1 (the target itself) decodes a 4 MP photo for a 160x160 model at 1/8 scale, where libjpeg
#: keeps only each 8x8 block's average. That decoded 25% faster but changed the shoes model's
#: answer on 5.7% of phone-size validation photos (1.4% with 2), and lost accuracy
#: (benchmarks/limit.py measures both settings on every run; see BENCHMARKS.md).
DRAFT_OVERSAMPLE = 2

ImageSource = Union[str, os.PathLike, bytes, np.ndarray, Image.Image]

#: ``warnings.catch_warnings`` swaps the process's warning filters and is not thread-safe: two
#: decode threads inside it at once could leave the bomb warning turned into an error for good.
#: Reading a header takes microseconds, so the threads take turns around it.
_OPEN_LOCK = threading.Lock()
#: None: not tried yet; then whether pillow-heif's opener is registered.
_heif_registered: bool | None = None


def _avif_decodes() -> bool:
    """Whether this Pillow has its AVIF decoder (libavif; in Pillow's wheels since 11.3). Its AVIF
    plugin is registered either way, and only says "not installed" when it is missing."""
    from PIL import features

    return bool(features.check_module("avif"))


def _heif_opener() -> bool:
    """Register pillow-heif's HEIF opener with Pillow, once (called under ``_OPEN_LOCK``);
    False when pillow-heif is not installed."""
    global _heif_registered
    if _heif_registered is None:
        try:
            import pillow_heif
        except ImportError:
            _heif_registered = False
        else:
            pillow_heif.register_heif_opener()
            _heif_registered = True
    return _heif_registered


def _iso_bmff_brand(fh: object) -> bytes | None:
    """The major brand of a stream that starts with an ISO base media ``ftyp`` box (``heic``,
    ``mif1``, ``avif``, an MP4's ``isom``, ...); None for anything else."""
    fh.seek(0)  # type: ignore[attr-defined]
    head = fh.read(12)  # type: ignore[attr-defined]
    fh.seek(0)  # type: ignore[attr-defined]
    return head[8:12] if len(head) == 12 and head[4:8] == b"ftyp" else None


def _open_any(fh: object) -> Image.Image:
    """``Image.open`` over Pillow's own :data:`PHOTO_FORMATS`, then HEIF for an ISO-BMFF file it did not
    identify (called under ``_OPEN_LOCK``)."""
    try:
        # Pillow loads only its five most common plugins until a format beyond them is asked for:
        # a JPEG or PNG scan never imports the others (WebP, TIFF, AVIF, ...).
        return Image.open(fh, formats=_PILLOW_FORMATS)  # type: ignore[arg-type]
    except UnidentifiedImageError:
        brand = _iso_bmff_brand(fh)
        if brand is None:
            raise
    if brand in (b"avif", b"avis") and not _avif_decodes():
        raise ImageError("AVIF image, and this Pillow cannot decode AVIF (Pillow's wheels can since 11.3)")
    if not _heif_opener():
        raise ImageError("HEIC/HEIF image, and pillow-heif (which reads them) is not installed") from None
    return Image.open(fh, formats=(HEIF_FORMAT,))  # type: ignore[arg-type]


def open_image(source: ImageSource) -> Image.Image:
    """Open (not yet decode) an image from a path, bytes, array or PIL image; check its size."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError("empty data (0 bytes)")
        fh: io.BytesIO | object = io.BytesIO(data)
    else:
        path = Path(source)
        try:
            st = path.stat()
        except OSError as exc:
            raise ImageError(_os_reason(exc)) from None
        except ValueError:  # a NUL byte in the path
            raise ImageError("invalid file name") from None
        if stat.S_ISDIR(st.st_mode):
            raise ImageError("is a directory")
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read; a device never ends
            raise ImageError("not a regular file")
        size = st.st_size
        if size == 0:
            raise ImageError("empty file (0 bytes)")
        if size > MAX_FILE_BYTES:
            raise ImageError(f"file is {size / 1e6:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
        try:
            fh = open(path, "rb")  # noqa: SIM115 - Pillow closes it with the image (exclusive fp)
        except OSError as exc:
            raise ImageError(_os_reason(exc)) from None
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Pillow warns before it raises for a format it knows but lacks a decoder for; the
            # ImageError below says so on its own line.
            warnings.filterwarnings("ignore", "image file could not be identified", UserWarning)
            im = _open_any(fh)
    except ImageError:
        _close(fh)
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        _close(fh)
        raise ImageError("refused: declared image size is a decompression bomb") from None
    except UnidentifiedImageError:
        _close(fh)
        raise ImageError("not a recognised image format") from None
    except (OSError, ValueError, SyntaxError) as exc:
        _close(fh)
        raise ImageError(f"cannot read image header: {_one_line(exc)}") from None
    w, h = im.size
    if w <= 0 or h <= 0:
        im.close()
        raise ImageError(f"invalid image size {w}x{h}")
    if w * h > MAX_PIXELS:
        im.close()
        raise ImageError(f"refused: {w}x{h} is over the {MAX_PIXELS // 1_000_000} MP limit")
    return im


#: What Pillow's decoders raise on corrupt data (struct.error: binary headers read short).
DECODER_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


def _one_line(exc: BaseException) -> str:
    """An exception's message as one printable line (decoder messages may span lines)."""
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return "".join(c if c.isprintable() else "?" for c in text)[:300]


def _close(fh: object) -> None:
    close = getattr(fh, "close", None)
    if close is not None:
        close()


def _os_reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else exc.__class__.__name__


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return Image.fromarray(arr, "L")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return Image.fromarray(arr, "RGB" if arr.shape[2] == 3 else "RGBA")
    raise ImageError(f"array of shape {arr.shape} is not an image")


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit int and float images become 8-bit L by scaling their range."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16"):
            scaled = arr / 257.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8), "L")
    return im


def _flatten(im: Image.Image, background: str) -> Image.Image:
    """Composite transparency onto a solid background; return RGB or L."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = im.convert("RGBA")
        fill = (255, 255, 255, 255) if background == "white" else (0, 0, 0, 255)
        base = Image.new("RGBA", rgba.size, fill)
        base.alpha_composite(rgba)
        return base.convert("RGB")
    if im.mode not in ("RGB", "L"):
        return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, 1, ...
    return im


def _border_mean(arr: np.ndarray) -> float:
    edge = np.concatenate([arr[0].ravel(), arr[-1].ravel(), arr[:, 0].ravel(), arr[:, -1].ravel()])
    return float(edge.mean())


def _trim_box(arr: np.ndarray, threshold: int) -> tuple[int, int, int, int] | None:
    """Bounding box (left, top, right, bottom) of pixels far from the median border value."""
    grey = arr if arr.ndim == 2 else arr.mean(axis=2)
    edge = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    diff = np.abs(grey - np.median(edge)) > threshold
    rows = np.flatnonzero(diff.any(axis=1))
    cols = np.flatnonzero(diff.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def prepare(source: ImageSource, size: tuple[int, int], pre: Preprocessing) -> np.ndarray:
    """Decode ``source`` and return a float32 ``(H, W, C)`` array in [0, 255] for a model whose
    input is ``size`` = (height, width), following ``pre``."""
    height, width = size
    with _decoding(source) as im:
        return _prepare_opened(im, height, width, pre, owned=not isinstance(source, Image.Image))


@contextmanager
def _decoding(source: ImageSource) -> Iterator[Image.Image]:
    """``source`` opened (:func:`open_image`) for decoding inside the block: a decoder's error there
    becomes one :class:`ImageError` line; what was opened here (not a caller's image) is closed."""
    im = open_image(source)
    try:
        yield im
    except ImageError:
        raise
    except DECODER_ERRORS as exc:
        raise ImageError(f"cannot decode image: {_one_line(exc)}") from None
    finally:
        if not isinstance(source, Image.Image):
            im.close()


def _prepare_opened(im: Image.Image, height: int, width: int, pre: Preprocessing, owned: bool = False) -> np.ndarray:
    """``owned``: ``im`` was opened here, so it may be changed in place (never a caller's image)."""
    if im.format == "JPEG":
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the photo is much larger than needed
        # (see DRAFT_OVERSAMPLE); a grey model gets libjpeg's grey output directly. Rotation by
        # EXIF may swap axes, so request a square of the larger side.
        side = DRAFT_OVERSAMPLE * max(height, width)
        im.draft(pre.color_mode if im.mode in ("RGB", "L") else None, (side, side))
    # An animation is already at its first frame after open. Asking ``is_animated`` would parse the
    # second frame's header, which in a corrupt GIF raised struct.error or IndexError (found by
    # scripts/fuzz.py): frames after the first are never looked at.
    im.load()
    if owned:
        ImageOps.exif_transpose(im, in_place=True)  # no copy when there is nothing to turn
    else:
        im = ImageOps.exif_transpose(im) or im
    im = _flatten(_to_8bit(im), pre.background)
    if im.mode != pre.color_mode:
        im = im.convert(pre.color_mode)

    if pre.invert != "never" or pre.trim:
        arr = np.asarray(im)
        if pre.invert == "always" or (pre.invert == "auto" and _border_mean(arr) > 127):
            im = ImageOps.invert(im)
            arr = np.asarray(im)
        if pre.trim:
            box = _trim_box(arr, pre.trim_threshold)
            if box is not None:
                left, top, right, bottom = box
                margin = int(round(pre.trim_margin * max(right - left, bottom - top)))
                im = im.crop((max(0, left - margin), max(0, top - margin),
                              min(im.width, right + margin), min(im.height, bottom + margin)))

    if pre.resize == "stretch":
        if im.size != (width, height):
            im = im.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
    elif pre.resize == "crop":
        im = ImageOps.fit(im, (width, height), Image.Resampling.BILINEAR)
    else:  # pad
        arr = np.asarray(im)
        fill = int(round(_border_mean(arr))) if arr.ndim == 2 else tuple(
            int(round(v)) for v in np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]]).mean(axis=0)
        )
        im = ImageOps.pad(im, (width, height), Image.Resampling.BILINEAR, color=fill)

    out = np.asarray(im, dtype=np.float32)
    if out.ndim == 2:
        out = out[:, :, None]
    return out


def decode_rgb(source: ImageSource, max_side: int) -> np.ndarray:
    """Decode ``source`` as it looks, for reading its text: an RGB uint8 ``(H, W, 3)`` array, upright
    (EXIF orientation), transparency on white, the aspect ratio kept and the longer side at most
    ``max_side`` (JPEGs are drafted down by libjpeg first). Errors are :class:`ImageError`."""
    with _decoding(source) as opened:
        if opened.format == "JPEG":
            opened.draft("RGB" if opened.mode in ("RGB", "L") else None, (max_side, max_side))
        opened.load()
        im = ImageOps.exif_transpose(opened) or opened
        im = _flatten(_to_8bit(im), "white").convert("RGB")
        if max(im.size) > max_side:
            im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8)
