"""The FastAPI application behind ``tagteller serve``: routes, error format and the scanner page.

``create_app(engine=None, max_upload_bytes=..., max_concurrency=None)`` builds it:

- ``GET /``: the scanner page (``static/index.html``; no external resources).
- ``GET /healthz``: liveness, without loading any model.
- ``GET /v1/domains``: each domain's name, description, labels, model and model version, and
  what its feedback inbox accepts (``allow_new_labels``, ``feedback_labels``); ``limits`` has the
  upload limit and the image formats a scan decodes.
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
- ``GET /v1/deal?domain=X&label=Y&price=P[&currency=C][&sure=false]``: the deal check for a label
  already told (the page re-runs it when the price is typed after the photo): the deal fields of
  :mod:`tagteller.serve.deals`.
- ``PUT /v1/prices?domain=X&label=Y&low=L&high=H[&currency=C][&note=N]``: set the label's typical
  price in the user's price list (:func:`tagteller.prices.set_price`, what ``tagteller prices set``
  does).
- ``GET /docs``, ``GET /redoc`` and ``GET /openapi.json``: the OpenAPI description and its pages,
  with Swagger UI and ReDoc served from the ``fastapi-offline`` package (no CDN).

Bad input is never a 500: 400 (content type, undecodable image, bad parameters, refused label,
malformed multipart, a price list with bad rows to rewrite), 404 (unknown domain), 413 (upload too
large), 503 (domain without a usable model, or with ``any``: no domain has one, for scans). Every error body is ``{"status": "error", "error": REASON, "code": CODE}``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

import tagteller
from tagteller import prices
from tagteller.engine import TEXT_READING, Engine, default_engine
from tagteller.errors import TagtellerError
from tagteller.output import result_record
from tagteller.serve.deals import (
    CURRENCY_FIELD,
    MAX_CURRENCY_CHARS,
    MAX_PRICE_CHARS,
    PRICE_FIELD,
    check_query_price,
    checked_deal,
    deal_check,
    parse_asking_price,
)
from tagteller.serve.errors import ApiError, error_body
from tagteller.serve.service import ANY_DOMAIN, ScanService
from tagteller.serve.uploads import FILE_FIELD, accepted_formats, check_request, read_upload

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Where Swagger UI's and ReDoc's files are served from (bundled by ``fastapi-offline``).
DOCS_ASSETS_URL = "/static-docs"
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


DEAL_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad price or currency, or a label the domain does not have"},
    404: {"description": "Unknown domain"},
}

PRICES_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad low, high, currency or note, a label the domain does not have, or a price list "
                         "with bad rows (fix them first)"},
    404: {"description": "Unknown domain"},
    500: {"description": "The price list cannot be written (the server's disk, never bad input)"},
}


def _checked(check: Any, label: str) -> str:
    """``check(label)``, its refusal answered as 400."""
    try:
        return check(label)
    except TagtellerError as exc:
        raise ApiError(400, str(exc)) from None


def _validation_reason(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ())]
    where = f"{loc[0]} parameter {loc[-1]!r}" if len(loc) >= 2 else "request"
    return f"{where}: {first.get('msg', 'invalid value')}"


def create_app(engine: Engine | None = None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_concurrency: int | None = None, read_text: bool = False) -> FastAPI:
    """The API and page, sharing ``engine`` (default: the process-wide engine). ``read_text``: scans
    read the photo's text for domains with text cues unless a request says ``read_text=false``."""
    if max_upload_bytes < 1:
        raise ValueError("max_upload_bytes must be at least 1")
    service = ScanService(engine or default_engine(), max_concurrency)
    app = FastAPIOffline(
        static_url=DOCS_ASSETS_URL,
        favicon_url="/static/favicon.svg",
        title="tagteller",
        version=tagteller.__version__,
        description="Tell what a thing is from a photo. `POST /v1/scan` with an image (and an asking "
                    "`price` for the deal check); `POST /v1/feedback` to file a photo with its right label; "
                    "`GET /v1/domains` for what can be told apart; `GET /v1/deal` and `PUT /v1/prices` for the "
                    "deal check and your typical prices.",
    )
    app.state.service = service
    app.state.max_upload_bytes = max_upload_bytes
    app.state.read_text = read_text

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
        return {"domains": rows, "limits": {"max_upload_bytes": max_upload_bytes, "max_top_k": MAX_TOP_K,
                                            "image_formats": accepted_formats()}}

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
        read_text: Optional[bool] = Query(None, description="Read the photo's text (OCR, the `ocr` extra) for "
                                          "domains with text cues: adds `text` and `text_match`; a brand cue may "
                                          "override the image answer. Default: the server's `--read-text`."),
    ) -> Any:
        started = time.perf_counter()
        reading = app.state.read_text if read_text is None else read_text
        if reading:
            from tagteller.text_cues import OcrUnavailable, require_ocr

            try:
                require_ocr("read_text")
            except OcrUnavailable as exc:
                raise ApiError(400, str(exc)) from None
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
        text_problem = None
        if reading and result.ok:
            text_problem = await service.read_text(result, upload.data, [d for d, _model in usable])
        deals = deal_check(asking)
        record = await service.run_blocking(checked_deal, lambda: result_record(
            result, low_confidence=lambda name: thresholds[name], deals=deals,
            extra={"top_k": top_k, "price": float(asking.paid) if asking is not None else None}))
        steps = record["timing_ms"]  # the engine's (and the text reader's) own steps
        steps.update(
            decode_and_inference=round(sum(ms for step, ms in result.timing_ms.items() if step != TEXT_READING), 3),
            waiting=timing.waiting_ms,
            total=round((time.perf_counter() - started) * 1000, 3),
        )
        if text_problem is not None:
            record["text_error"] = text_problem
        if not result.ok:
            raise ApiError(400, record["error"] or "cannot decode image", body={**record, "code": 400})
        return record

    @app.get("/v1/deal", summary="The deal check for a label at a price (no image needed)", responses=DEAL_RESPONSES)
    async def deal(
        domain: str = Query(..., min_length=1, max_length=64, description="The domain that told the label."),
        label: str = Query(..., min_length=1, max_length=256, description="The label, e.g. a scan's answer."),
        price: str = Query(..., min_length=1, max_length=MAX_PRICE_CHARS,
                           description="The asking price, more than 0, e.g. 12.50 (rules as for a scan)."),
        currency: Optional[str] = Query(None, max_length=MAX_CURRENCY_CHARS,
                                        description="ISO 4217 code of `price`; default: the price list's."),
        sure: bool = Query(True, description="false for an answer the model is not sure about: the sentence "
                                             "then starts with `if it is LABEL:`."),
    ) -> Any:
        dom = await service.run_blocking(service.domain, domain)
        label = _checked(prices.price_label_checker(dom), label)
        asking = parse_asking_price(price, None, currency, None)
        record = {"status": "ok", "label": label, "sure": sure}
        deals = deal_check(asking)
        fields = await service.run_blocking(checked_deal, lambda: deals.fields(dom.name, record))
        return {"domain": dom.name, "label": label, "sure": sure,
                "price": float(asking.paid) if asking is not None else None, **fields}

    @app.put("/v1/prices", summary="Set a label's typical price in your price list", responses=PRICES_RESPONSES)
    async def set_typical_price(
        domain: str = Query(..., min_length=1, max_length=64, description="Domain the price list belongs to."),
        label: str = Query(..., min_length=1, max_length=256, description="The label the range is for."),
        low: str = Query(..., min_length=1, max_length=MAX_PRICE_CHARS, description="Low end, e.g. 60."),
        high: str = Query(..., min_length=1, max_length=MAX_PRICE_CHARS, description="High end, e.g. 90."),
        currency: str = Query(prices.DEFAULT_CURRENCY, min_length=1, max_length=MAX_CURRENCY_CHARS,
                              description="ISO 4217 code."),
        note: str = Query("", max_length=prices.MAX_NOTE_CHARS, description="Where the range comes from."),
    ) -> Any:
        dom = await service.run_blocking(service.domain, domain)

        def save() -> tuple[str, prices.PriceRange, Optional[prices.PriceRange]]:
            checked = _checked(prices.price_label_checker(dom), label)
            try:
                entry, previous = prices.set_price(dom, checked, low, high, currency, note)
            except TagtellerError as exc:
                raise ApiError(400, str(exc)) from None
            except OSError as exc:  # the server's disk, not the request
                raise ApiError(500, f"cannot write your {dom.name} price list: "
                                    f"{exc.strerror or exc.__class__.__name__}") from None
            return checked, entry, previous

        saved, entry, previous = await service.run_blocking(save)
        was = f" (was {previous.describe()})" if previous is not None else ""
        return {"domain": dom.name, **prices.range_record(saved, entry),
                "previous": prices.range_record(saved, previous) if previous is not None else None,
                "path": str(prices.price_list_path(dom.name)),
                "message": f"{saved}: typical {entry.describe()}{was}, saved in your price list"}

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
