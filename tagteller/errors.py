"""The exceptions tagteller raises on purpose: each carries a one-line, user-facing message."""

from __future__ import annotations


class TagtellerError(Exception):
    """Base class: a problem the user can fix, reported as one line without a traceback."""


class InvalidNameError(TagtellerError):
    """A domain, label or plugin name that is not safe to use (e.g. as part of a path)."""


class ModelError(TagtellerError):
    """A model file that is missing, unreadable, not ONNX, or whose metadata does not fit it."""


class ImageError(TagtellerError):
    """An image that cannot be decoded, or that is refused (e.g. a decompression bomb)."""


class DatasetError(TagtellerError):
    """A dataset folder or file that does not match the layout its domain declares."""


class UnknownDomainError(TagtellerError):
    """A domain name that no loaded plugin registered."""
