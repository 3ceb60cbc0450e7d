"""Shared fixtures: an isolated TAGTELLER_HOME per test, fresh plugin state, paths to ../shared."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tagteller import plugins

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SHARED_DATASETS = SHARED / "datasets"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own user folders and a freshly loaded plugin manager."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TAGTELLER_HOME", str(home))
    monkeypatch.delenv("TAGTELLER_PLUGINS", raising=False)
    plugins.reset()
    yield home
    plugins.reset()


def has_tensorflow() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


requires_tf = pytest.mark.skipif(not has_tensorflow(), reason="needs the [train] extra (tensorflow)")


def shared_dataset(name: str) -> Path:
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"../shared/datasets/{name} is not present on this machine")
    return path
