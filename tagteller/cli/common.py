"""Helpers shared by the CLI commands: resolving a domain and its model (or every domain's),
consoles."""

from __future__ import annotations

from pathlib import Path

from typing import Any

from tagteller import plugins
from tagteller.errors import ModelError, TagtellerError


class _LazyConsole:
    """A rich ``Console`` on stderr, created on first use: importing rich's console costs tens of
    milliseconds that a one-image ``tagteller scan`` should not pay when nothing goes wrong."""

    _console: Any = None

    def real(self) -> Any:
        """The ``rich.console.Console`` itself (for ``Progress(console=...)``)."""
        if self._console is None:
            from rich.console import Console

            type(self)._console = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


stderr = _LazyConsole()

#: ``sure`` threshold for a model scanned without its domain (``--model`` alone): the domains' default.
DEFAULT_LOW_CONFIDENCE = 0.5


def resolve_domain_and_model(domain: str | None, model: Path | None):
    """Return ``(domain_or_None, model_path)`` for ``--domain``/``--model``; raise with a clear
    message when neither leads to a model."""
    dom = plugins.get_domain(domain) if domain else None
    if model is not None:
        return dom, model
    if dom is None:
        raise TagtellerError("pass --domain NAME (see `tagteller domains`) or --model FILE.onnx")
    path = dom.resolve_model()
    if path is None:
        raise ModelError(
            f"no model installed for domain {dom.name!r}: train one with "
            f"`tagteller train --domain {dom.name} DATA_DIR`, or pass --model FILE.onnx"
        )
    return dom, path


def usable_domain_models(engine: Any) -> list[tuple[Any, Any]]:
    """``(domain, loaded model)`` for every registered domain with a usable model (installed or
    shipped: ``domain.resolve_model()``), for scans without ``--domain``. Domains without a model
    are left out quietly; one whose model cannot be opened, or was trained for another domain,
    is named in a warning and left out. None at all is an error."""
    usable = []
    for dom in plugins.domains().values():
        path = dom.resolve_model()
        if path is None:
            continue
        try:
            loaded = engine.load(path)
            dom.check_model(loaded.info.domain, path)
        except ModelError as exc:
            stderr.print(f"warning: domain {dom.name!r} skipped: {exc}", markup=False)
            continue
        usable.append((dom, loaded))
    if not usable:
        raise ModelError("no domain has a model to scan with: train one with `tagteller train --domain NAME "
                         "DATA_DIR`, or pass --domain NAME or --model FILE.onnx")
    return usable
