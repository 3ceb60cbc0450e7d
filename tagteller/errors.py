"""The exceptions tagteller raises on purpose: each carries a one-line, user-facing message."""

from __future__ import annotations


class TagtellerError(Exception):
    """Base class: a problem the user can fix, reported as one line without a traceback."""


class InvalidNameError(TagtellerError):
    """A domain, label or plugin name that is not safe to use (e.g. as part of a path)."""


class ModelError(TagtellerError):
    """A model file that is missing, unreadable, not ONNX, or whose metadata does not fit it."""


class DomainMismatchError(ModelError):
    """A model trained for another domain than the one it is used for
    (:meth:`tagteller.domain.Domain.check_model`)."""

    def __init__(self, where: str, model_domain: str, domain: str) -> None:
        super().__init__(f"{where}: this model is for domain {model_domain!r}, not {domain!r}")
        self.where, self.model_domain, self.domain = where, model_domain, domain


class ImageError(TagtellerError):
    """An image that cannot be decoded, or that is refused (e.g. a decompression bomb)."""


class DatasetError(TagtellerError):
    """A dataset folder or file that does not match the layout its domain declares."""


class UnknownDomainError(TagtellerError):
    """A domain name that no loaded plugin registered."""
