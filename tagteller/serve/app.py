"""The FastAPI application behind ``tagteller serve``: routes, error format and the scanner page.

``create_app(engine=None, max_upload_bytes=..., max_concurrency=None)`` builds it:

- ``GET /``: the scanner page (``static/index.html``; no external resources).
- ``GET /healthz``: liveness, without loading any model.
- ``GET /v1/domains``: each domain's name, description, labels, model and model version, and
  what its feedback inbox accepts (``allow_new_labels``, ``feedback_labels``).
- ``POST /v1/scan?domain=X&top_k=K[&price=P&currency=C][&accept_unknown=true]``: classify one
  image sent as multipart (``file`` field) or as a raw ``image/*`` / ``application/octet-stream``
  body; answers the record of :func:`tagteller.output.result_record` plus ``top_k``, ``price``,
  the deal fields of :mod:`tagteller.serve.deals` and ``timing_ms``. ``domain=any`` runs every
  domain with a usable model and answers with the one that recognises the image. An image the
  model does not recognise answers 200 with ``status: "unknown"``, a null label and no deal.
- ``POST /v1/feedback?domain=X&label=Y[&new_label=true]``: file one image (sent like a scan's)
  in the domain's feedback inbox (:func:`tagteller.feedback.file_image`); answers
  ``FiledResult.as_dict()`` plus its ``message``, and for a new label ``teach``: the offer to
  teach it from the inbox's photos of it (:func:`tagteller.taught.teach_offer`).
- ``POST /v1/teach?domain=X&label=Y``: teach LABEL from the photos filed under it in the
  domain's feedback inbox (``tagteller teach --from-feedback``); answers the teach report.
- ``GET /docs`` and ``GET /openapi.json``: FastAPI's OpenAPI description.

Bad input is never a 500: 400 (content type, undecodable image, bad parameters, refused label,
malformed multipart), 404 (unknown domain), 413 (upload too large), 503 (domain without a usable
model, or with ``any``: no domain has one, for scans). Every error body is ``{"status": "error", "error": REASON, "code": CODE}``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import tagteller
from tagteller.engine import Engine, default_engine
from tagteller.output import result_record
from tagteller.serve.deals import (
    CURRENCY_FIELD,
    MAX_CURRENCY_CHARS,
    MAX_PRICE_CHARS,
    PRICE_FIELD,
    check_query_price,
    deal_fields,
    parse_asking_price,
)
from tagteller.serve.errors import ApiError, error_body
from tagteller.serve.service import ANY_DOMAIN, ScanService
from tagteller.serve.uploads import FILE_FIELD, check_request, read_upload

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Default upload limit: a full-resolution phone photo fits comfortably.
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_TOP_K = 50

#: The page loads only its own files; the browser enforces it (and no CDN can sneak in).
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

SCAN_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "description": "The image: a multipart form with a `file` part (and optional `price` and "
                       "`currency`), or the raw image bytes.",
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object",
                "required": [FILE_FIELD],
                "properties": {FILE_FIELD: {"type": "string", "format": "binary"},
                               PRICE_FIELD: {"type": "string", "example": "12.50"},
                               CURRENCY_FIELD: {"type": "string", "example": "EUR"}},
            }},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

FEEDBACK_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "description": "The image to file: a multipart form with a `file` part, or the raw image bytes.",
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object",
                "required": [FILE_FIELD],
                "properties": {FILE_FIELD: {"type": "string", "format": "binary"}},
            }},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad parameters, wrong content type, or an image that cannot be decoded"},
    404: {"description": "Unknown domain"},
    413: {"description": "Upload larger than the server's limit"},
    503: {"description": "The domain has no usable model"},
}

FEEDBACK_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Refused label, bad parameters, wrong content type, or an image that cannot be decoded"},
    404: {"description": "Unknown domain"},
    413: {"description": "Upload larger than the server's limit"},
    500: {"description": "The feedback inbox cannot be written (the server's disk, never bad input)"},
}


def _validation_reason(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ())]
    where = f"{loc[0]} parameter {loc[-1]!r}" if len(loc) >= 2 else "request"
    return f"{where}: {first.get('msg', 'invalid value')}"


def create_app(engine: Engine | None = None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_concurrency: int | None = None) -> FastAPI:
    """The API and page, sharing ``engine`` (default: the process-wide engine)."""
    if max_upload_bytes < 1:
        raise ValueError("max_upload_bytes must be at least 1")
    service = ScanService(engine or default_engine(), max_concurrency)
    app = FastAPI(
        title="tagteller",
        version=tagteller.__version__,
        description="Tell what a thing is from a photo. `POST /v1/scan` with an image (and an asking "
                    "`price` for the deal check); `POST /v1/feedback` to file a photo with its right label; "
                    "`GET /v1/domains` for what can be told apart.",
    )
    app.state.service = service
    app.state.max_upload_bytes = max_upload_bytes

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.content(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(400, _validation_reason(exc)), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", summary="Liveness check (loads no model)")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": tagteller.__version__}

    @app.get("/v1/domains", summary="The domains this server can scan with")
    async def list_domains() -> dict[str, Any]:
        rows = await service.run_blocking(service.describe_domains)
        return {"domains": rows, "limits": {"max_upload_bytes": max_upload_bytes, "max_top_k": MAX_TOP_K}}

    @app.post("/v1/scan", summary="Tell what is in one image", openapi_extra=SCAN_REQUEST_BODY,
              responses=ERROR_RESPONSES)
    async def scan(
        request: Request,
        domain: str = Query(..., min_length=1, max_length=64,
                            description=f"Domain to scan with (see /v1/domains), or `{ANY_DOMAIN}`: every "
                                        "domain with a model, answered by the one that recognises the image."),
        top_k: int = Query(3, ge=1, le=MAX_TOP_K, description="How many labels to report."),
        price: Optional[str] = Query(None, max_length=MAX_PRICE_CHARS,
                                     description="Optional asking price (more than 0, e.g. 12.50): adds the deal "
                                                 "check against the label's typical price."),
        currency: Optional[str] = Query(None, max_length=MAX_CURRENCY_CHARS,
                                        description="ISO 4217 code of `price` (e.g. EUR); only typical prices in "
                                                    "it are used. Default: whatever the price list uses."),
        accept_unknown: bool = Query(False, description="Answer with the best label even when the model says "
                                                        "the image is unlike anything its domain knows."),
    ) -> Any:
        started = time.perf_counter()
        check_query_price(price, currency)  # a bad query price fails before the upload is read
        if domain == ANY_DOMAIN:
            check_request(request, max_upload_bytes)  # content type and declared size, before reading
            usable = await service.run_blocking(service.models_for_any)
        else:
            dom = await service.run_blocking(service.domain, domain)
            check_request(request, max_upload_bytes)
            usable = [(dom, await service.run_blocking(service.model_for, dom))]
        thresholds = {d.name: d.low_confidence for d, _model in usable}
        upload = await read_upload(request, max_upload_bytes)
        asking = parse_asking_price(price, upload.fields.get(PRICE_FIELD), currency, upload.fields.get(CURRENCY_FIELD))
        if domain == ANY_DOMAIN:
            result, timing = await service.classify_any([m for _d, m in usable], upload.data, upload.name, top_k,
                                                        accept_unknown)
        else:
            result, timing = await service.classify(usable[0][1], upload.data, upload.name, top_k, accept_unknown)
        record = result_record(result, low_confidence=lambda name: thresholds[name], extra={
            "top_k": top_k,
            "price": float(asking.paid) if asking is not None else None,
        })
        record.update(await service.run_blocking(deal_fields, record["domain"], record, asking))
        record["timing_ms"] = {
            "decode_and_inference": timing.decode_and_inference_ms,
            "waiting": timing.waiting_ms,
            "total": round((time.perf_counter() - started) * 1000, 3),
        }
        if not result.ok:
            raise ApiError(400, record["error"] or "cannot decode image", body={**record, "code": 400})
        return record

    @app.post("/v1/feedback", summary="File a photo with its right label in the domain's feedback inbox",
              openapi_extra=FEEDBACK_REQUEST_BODY, responses=FEEDBACK_ERROR_RESPONSES)
    async def file_feedback(
        request: Request,
        domain: str = Query(..., min_length=1, max_length=64, description="Domain whose inbox gets the photo."),
        label: str = Query(..., min_length=1, max_length=256, description="The right label for the photo."),
        new_label: bool = Query(False, description="Allow a label the domain does not know yet (only for "
                                                   "domains with `allow_new_labels`)."),
    ) -> Any:
        dom = await service.run_blocking(service.domain, domain)
        label = await service.run_blocking(service.check_feedback_label, dom, label, new_label)
        check_request(request, max_upload_bytes)
        upload = await read_upload(request, max_upload_bytes)
        filed = await service.file_feedback(dom, upload.data, label, new_label)
        from tagteller.taught import teach_offer

        body = {**filed.as_dict(), "message": filed.message, "file": upload.name}
        offer = await service.run_blocking(teach_offer, dom, filed.label)
        if offer is not None:  # a new label: teaching it from the inbox is offered
            body["teach"] = offer
        return body

    @app.post("/v1/teach", summary="Teach a new label from the photos filed under it in the feedback inbox")
    async def teach_label(
        domain: str = Query(..., min_length=1, max_length=64, description="Domain to teach."),
        label: str = Query(..., min_length=1, max_length=256, description="The new label (its photos are in the inbox)."),
    ) -> Any:
        from tagteller import taught
        from tagteller.errors import TagtellerError

        dom = await service.run_blocking(service.domain, domain)

        def work() -> dict[str, Any]:
            try:
                taught.check_teachable(dom, label)  # a refused label is 400 before anything else
                report = taught.teach_from_feedback(dom, service.model_for(dom), label)
            except TagtellerError as exc:
                raise ApiError(400, str(exc)) from None
            return {**report.as_dict(), "message": f"taught {report.label!r} from {report.total} photos"}

        return await service.run_blocking(work)

    return app
