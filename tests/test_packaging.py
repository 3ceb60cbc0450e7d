"""Packaging checks: every package is listed in pyproject, and a plain install has no tensorflow."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_subpackage_is_listed():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {"tagteller_plugins", "tagteller_models"}
    for init in (REPO / "tagteller").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(REPO).parts))
    assert found == listed


def test_core_dependencies_have_ranges_and_no_tensorflow():
    project = _pyproject()["project"]
    for dep in project["dependencies"]:
        assert "<" in dep and ">=" in dep, f"{dep} needs a tested range"
        assert not dep.lower().startswith(("tensorflow", "keras", "tf2onnx", "matplotlib")), dep
    train = " ".join(project["optional-dependencies"]["train"])
    assert "tensorflow-cpu>=2.21,<2.22" in train and "tf2onnx>=1.17,<1.18" in train


def test_builtin_domains_are_entry_points():
    eps = _pyproject()["project"]["entry-points"]["tagteller"]
    assert set(eps) == {"apparel", "shoes", "products", "books", "clothing-tags", "trousers"}
    for module in eps.values():
        assert (REPO / "plugins" / (module.split(".")[-1] + ".py")).is_file()
