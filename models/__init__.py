"""The ONNX models that ship with tagteller, one ``<domain>.onnx`` per domain (see MODELS.md).

Installed as the ``tagteller_models`` package so the built-in plugins can point at them.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent


def shipped_model(domain: str) -> Path:
    """The path a shipped model for ``domain`` has (it may not exist)."""
    return MODELS_DIR / f"{domain}.onnx"
