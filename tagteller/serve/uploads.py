"""Reading the one image a scan request carries, within a byte limit.

A scan request carries its image either as ``multipart/form-data`` (a ``file`` part, as a browser
form or ``curl -F file=@photo.jpg`` sends it; other text fields such as ``price`` come along) or
as the raw request body with ``Content-Type: image/*`` or ``application/octet-stream``.

The size limit is enforced twice: a declared ``Content-Length`` over the limit is refused before
a byte is read, and the bytes that actually arrive are counted as they stream in (a chunked
upload declares no length; a lying one is caught too), so an upload is cut off with 413 as soon
as it passes the limit. A multipart envelope may add :data:`MULTIPART_OVERHEAD` bytes of headers
and fields around the image; the image itself must still fit the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive

from tagteller.serve.errors import ApiError

#: Room for the multipart boundary, part headers and small text fields around the image.
MULTIPART_OVERHEAD = 64 * 1024
#: Largest text field accepted in a multipart upload (``price`` and the like).
MAX_FIELD_BYTES = 4 * 1024
#: The multipart field that carries the image.
FILE_FIELD = "file"

RAW_TYPES_TEXT = "image/* or application/octet-stream"

#: How the page names Pillow's formats (the rest are shown as Pillow names them).
FORMAT_NAMES = {"JPEG": "JPEG", "PNG": "PNG", "GIF": "GIF", "WEBP": "WebP", "TIFF": "TIFF", "BMP": "BMP",
                "HEIF": "HEIC/HEIF", "AVIF": "AVIF"}


def accepted_formats() -> list[str]:
    """The image formats a scan decodes (:data:`tagteller.imaging.PHOTO_FORMATS`), named for people."""
    from tagteller.imaging import PHOTO_FORMATS

    return [FORMAT_NAMES.get(name, name) for name in PHOTO_FORMATS]


@dataclass
class Upload:
    """The image bytes of one request, the name to report it by, and any text form fields."""

    data: bytes
    name: str
    fields: dict[str, str] = field(default_factory=dict)


def human_bytes(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.3g} MiB"
    if count >= 1024:
        return f"{count / 1024:.3g} KiB"
    return f"{count} bytes"


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"upload is larger than the {human_bytes(limit)} limit")


def media_type(request: Request) -> str:
    """The request's media type, lower-case, without parameters ('' when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_image_type(value: str) -> bool:
    return value.startswith("image/") or value == "application/octet-stream"


def check_request(request: Request, max_bytes: int) -> str:
    """Refuse a request by its headers alone: wrong content type (400), declared size over the
    limit (413). Returns the media type."""
    kind = media_type(request)
    if kind != "multipart/form-data" and not is_image_type(kind):
        shown = kind or "missing"
        raise ApiError(400, f"content type {shown} is not accepted: send the image as multipart/form-data "
                            f"(field {FILE_FIELD!r}) or as a raw body with Content-Type {RAW_TYPES_TEXT}")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ApiError(400, f"invalid Content-Length header {declared[:40]!r}") from None
        if length > body_limit(kind, max_bytes):
            raise too_large(max_bytes)
    return kind


def body_limit(kind: str, max_bytes: int) -> int:
    return max_bytes + MULTIPART_OVERHEAD if kind == "multipart/form-data" else max_bytes


def _counting_receive(receive: Receive, limit: int, max_bytes: int) -> Receive:
    """Wrap an ASGI ``receive`` so that more than ``limit`` body bytes raise 413 on arrival."""
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large(max_bytes)
        return message

    return counted


def clean_filename(name: str | None, fallback: str) -> str:
    """The last path component of a client-supplied file name, printable, at most 200 chars."""
    if not name:
        return fallback
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable())[:200]
    return base or fallback


async def read_upload(request: Request, max_bytes: int) -> Upload:
    """Read the request's image (and text fields) within ``max_bytes``; raise :class:`ApiError`."""
    kind = check_request(request, max_bytes)
    limited = Request(request.scope, _counting_receive(request.receive, body_limit(kind, max_bytes), max_bytes))
    try:
        if kind == "multipart/form-data":
            upload = await _read_multipart(limited, max_bytes)
        else:
            data = b"".join([chunk async for chunk in limited.stream()])
            upload = Upload(data=data, name=f"<{len(data)} bytes>")
    except ClientDisconnect:
        raise ApiError(400, "the client disconnected before the upload was complete") from None
    if not upload.data:
        raise ApiError(400, "empty upload (0 bytes): send an image")
    return upload


async def _read_multipart(request: Request, max_bytes: int) -> Upload:
    try:
        form = await request.form(max_files=1, max_fields=16, max_part_size=MAX_FIELD_BYTES)
    except HTTPException as exc:  # Starlette's parser reports malformed multipart this way
        raise ApiError(400, f"malformed multipart upload: {exc.detail}") from None
    try:
        part = form.get(FILE_FIELD)
        if part is None:
            raise ApiError(400, f"the multipart upload has no {FILE_FIELD!r} field: send the image as "
                                f"{FILE_FIELD}=@photo.jpg")
        if not isinstance(part, UploadFile):
            raise ApiError(400, f"the {FILE_FIELD!r} field must be a file part (with a filename), not a text field")
        part_type = (part.content_type or "").split(";", 1)[0].strip().lower()
        if part_type and not is_image_type(part_type):
            raise ApiError(400, f"the {FILE_FIELD!r} part has content type {part_type}, not an image "
                                f"({RAW_TYPES_TEXT})")
        data = await part.read()
        if len(data) > max_bytes:
            raise too_large(max_bytes)
        fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
        return Upload(data=data, name=clean_filename(part.filename, f"<{len(data)} bytes>"), fields=fields)
    finally:
        await form.close()
