"""ruff over the tree and mypy over the core, as configured in pyproject.toml (``[tool.ruff]``,
``[tool.mypy]``): this test is how the test command (and so CI) runs them. Skipped when they are
not installed (the ``[dev]`` extra pins both)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (the [dev] extra)")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_ruff_finds_nothing():
    proc = _run("ruff", "check", "--no-cache", "--output-format", "concise", ".")
    assert proc.returncode == 0, f"ruff check:\n{proc.stdout}{proc.stderr}"


def test_mypy_finds_nothing_in_the_core():
    proc = _run("mypy", "--no-incremental", "--cache-dir", "/dev/null")
    assert proc.returncode == 0, f"mypy:\n{proc.stdout}{proc.stderr}"
