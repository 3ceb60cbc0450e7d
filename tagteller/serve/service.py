"""The scanning side of the server: one engine per process, scans off the event loop, bounded.

:class:`ScanService` resolves a domain and its model (``domain.resolve_model()``, opened once and
cached by the shared :class:`~tagteller.engine.Engine`), and runs each scan in a worker thread
through an ``anyio`` capacity limiter, so at most ``max_concurrency`` scans decode and infer at
once while the event loop keeps answering other requests. onnxruntime sessions are safe to run
from several threads, so every request shares the engine's one session per model.

A scan with domain ``any`` (:data:`ANY_DOMAIN`) runs every domain that has a usable model
(:meth:`ScanService.models_for_any`) and answers with the one that recognises the image
(:meth:`tagteller.engine.Engine.classify_any`).

It also files feedback images (:func:`tagteller.feedback.file_image`) under the same limiter,
since checking an image decodes it fully, and looks up deals (:mod:`tagteller.serve.deals`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from tagteller import feedback, plugins
from tagteller.engine import Engine, LoadedModel, ScanResult
from tagteller.errors import DomainMismatchError, ModelError, TagtellerError, UnknownDomainError
from tagteller.feedback import FiledResult
from tagteller.serve.errors import ApiError


#: The ``domain`` a scan gives to be answered by whichever domain recognises the image.
ANY_DOMAIN = "any"


def default_concurrency() -> int:
    """Scans run at once by default: one per core, at most four."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class Timing:
    """Milliseconds a scan spent waiting for a free scan slot (what each step of the scan itself
    spent is the result's ``timing_ms``, measured by the engine)."""

    waiting_ms: float


class ScanService:
    """Domains, their models and the scans, shared by every request of one app."""

    def __init__(self, engine: Engine, max_concurrency: int | None = None) -> None:
        self.engine = engine
        self.max_concurrency = max_concurrency or default_concurrency()
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._limiter: anyio.CapacityLimiter | None = None
        self._reader: Any = None  # the OCR reader (tagteller.text_cues), made on the first read_text

    def _scan_limiter(self) -> anyio.CapacityLimiter:
        # Created on first use, inside the running event loop (older anyio needs one).
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_concurrency)
        return self._limiter

    # -- domains and models (blocking; call them through a worker thread) ---------------------
    @staticmethod
    def domain(name: str) -> Any:
        """The registered domain called ``name``; 404 when there is none."""
        try:
            return plugins.get_domain(name)
        except UnknownDomainError as exc:
            raise ApiError(404, str(exc)) from None

    def model_for(self, domain: Any) -> LoadedModel:
        """The domain's model, opened once by the engine; 503 when it has none or it is broken."""
        path = domain.resolve_model()
        if path is None:
            raise ApiError(503, f"domain {domain.name!r} has no model installed: train one with "
                                f"`tagteller train --domain {domain.name} DATA_DIR`")
        try:
            loaded = self.engine.load(path)
            domain.check_model(loaded.info.domain, path)
        except DomainMismatchError as exc:
            raise ApiError(503, f"the model for domain {domain.name!r} ({path.name}) was trained for "
                                f"domain {exc.model_domain!r}") from None
        except ModelError as exc:
            raise ApiError(503, f"the model for domain {domain.name!r} cannot be used: {exc}") from None
        return loaded

    def models_for_any(self) -> list[tuple[Any, LoadedModel]]:
        """``(domain, model)`` for every domain with a usable model (the others are left out, as
        ``/v1/domains`` shows them); 503 when there is none."""
        usable = []
        for dom in plugins.domains().values():
            if dom.model_source() == "none":
                continue
            try:
                usable.append((dom, self.model_for(dom)))
            except ApiError:
                continue
        if not usable:
            raise ApiError(503, "no domain has a usable model: train one with "
                                "`tagteller train --domain NAME DATA_DIR`")
        return usable

    def describe_domains(self) -> list[dict[str, Any]]:
        """Each domain: name, description, labels, whether a usable model is there, its version."""
        rows = []
        for dom in plugins.domains().values():
            row: dict[str, Any] = {
                "name": dom.name,
                "description": dom.description,
                "labels": list(dom.labels),
                "plugin": dom.plugin,
                "model": dom.model_source(),
                "has_model": False,
                "model_version": None,
                "open_set": False,
                "model_error": None,
                "low_confidence": dom.low_confidence,
                "allow_new_labels": dom.allow_new_labels,
                "feedback_labels": feedback.known_labels(dom),
            }
            if row["model"] != "none":
                try:
                    loaded = self.model_for(dom)
                except ApiError as exc:
                    row["model_error"] = exc.reason
                else:
                    row.update(has_model=True, model_version=loaded.info.model_version,
                               labels=list(loaded.info.labels), open_set=loaded.info.ood_output is not None)
            rows.append(row)
        return rows

    @staticmethod
    def check_feedback_label(domain: Any, label: str, new_label: bool) -> str:
        """``label`` if an image may be filed under it in ``domain``'s inbox; 400 otherwise."""
        try:
            return feedback.check_label(domain, label, new_label)
        except TagtellerError as exc:
            raise ApiError(400, api_wording(str(exc))) from None

    # -- async entry points -----------------------------------------------------------------
    async def run_blocking(self, func: Any, *args: Any) -> Any:
        """Run a blocking helper (plugin loading, model opening) in a worker thread."""
        return await anyio.to_thread.run_sync(func, *args)

    async def classify(self, model: LoadedModel, data: bytes, name: str, top_k: int,
                       accept_unknown: bool = False) -> tuple[ScanResult, Timing]:
        """Decode and classify one image in a worker thread, at most ``max_concurrency`` at once."""
        return await self._timed(lambda: self.engine.classify(model, data, top_k=top_k,
                                                              accept_unknown=accept_unknown), name)

    async def classify_any(self, models: list[LoadedModel], data: bytes, name: str, top_k: int,
                           accept_unknown: bool = False) -> tuple[ScanResult, Timing]:
        """:meth:`classify` with every one of ``models``: the answer of the domain that recognises
        the image (one scan slot for all of them)."""
        return await self._timed(lambda: self.engine.classify_any(models, data, top_k=top_k,
                                                                  accept_unknown=accept_unknown), name)

    async def read_text(self, result: ScanResult, data: bytes, domains: list[Any]) -> str | None:
        """Read the photo's text for ``result`` when its domain (one of ``domains``) declares text
        cues (:class:`tagteller.text_cues.SecondOpinion`, updating ``result`` and its
        ``timing_ms``), in a worker thread within the scan limit. Returns why the text was not
        read, or None."""
        from tagteller.text_cues import SecondOpinion, TextReader

        if self._reader is None:
            self._reader = TextReader()
        opinion = SecondOpinion({d.name: d.text_cues for d in domains if d.text_cues is not None}, self._reader)
        return await anyio.to_thread.run_sync(opinion.apply, result, data, limiter=self._scan_limiter())

    async def _timed(self, scan: Any, name: str) -> tuple[ScanResult, Timing]:
        """Run ``scan()`` in a worker thread within the scan limit, timing the wait for a slot."""
        queued = time.perf_counter()

        def work() -> tuple[ScanResult, float]:
            waited = time.perf_counter() - queued
            return scan(), waited

        result, waited = await anyio.to_thread.run_sync(work, limiter=self._scan_limiter())
        result.source = name
        return result, Timing(waiting_ms=round(waited * 1000, 3))

    async def file_feedback(self, domain: Any, data: bytes, label: str, new_label: bool) -> FiledResult:
        """File ``data`` under ``label`` in the domain's feedback inbox, in a worker thread within
        the scan limit (the image is decoded fully). 400 for a refused label or image."""

        def work() -> FiledResult:
            try:
                return feedback.file_image(domain, data, label, new_label)
            except TagtellerError as exc:
                raise ApiError(400, api_wording(str(exc))) from None
            except OSError as exc:  # the server's disk, not the request: full, read-only...
                raise ApiError(500, f"cannot write to the {domain.name} feedback inbox: "
                                    f"{exc.strerror or exc.__class__.__name__}") from None

        return await anyio.to_thread.run_sync(work, limiter=self._scan_limiter())


def api_wording(message: str) -> str:
    """A core message with the CLI's option names replaced by the API's parameters."""
    return message.replace("pass --new-label", "send new_label=true")
