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


def _requirement_names(requirements: list[str]) -> set[str]:
    import re

    return {re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower().replace("_", "-") for req in requirements}


#: Modules the tests import only in ``train``-marked tests (the [train] extra), and what provides
#: modules no requirement names directly.
TRAIN_ONLY_MODULES = {"tensorflow", "keras", "h5py", "tf2onnx"}
PROVIDED_BY = {"PIL": "pillow", "sklearn": "scikit-learn", "requests": "pooch", "python_multipart": "python-multipart",
               "pillow_heif": "pillow-heif", "playwright": "playwright"}


def test_serve_and_dev_extras_hold_what_the_tests_import():
    """A `pip install '.[serve,dev]'` runs the suite: every third-party module a test imports (or
    needs to build the example plugin) is a base, serve or dev requirement."""
    import ast
    import sys

    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    available = _requirement_names(project["dependencies"] + extras["serve"] + extras["dev"])
    assert {"matplotlib", "setuptools", "wheel"} <= available  # plots in evaluate tests; plugin builds
    own = {"tagteller", "tagteller_plugins", "tagteller_models", "tests", "benchkit"}
    imported: set[str] = set()
    for test in (REPO / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(test.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - own - TRAIN_ONLY_MODULES
    missing = {m for m in third_party if PROVIDED_BY.get(m, m).lower().replace("_", "-") not in available}
    assert not missing, f"tests import {sorted(missing)}, which no base, [serve] or [dev] requirement installs"


def test_licence_is_an_spdx_expression_with_its_files():
    pyproject = _pyproject()
    project = pyproject["project"]
    assert project["license"] == "MIT"  # PEP 639; the {text = ...} table is deprecated
    for pattern in project["license-files"]:
        assert list(REPO.glob(pattern)), pattern
    [setuptools] = [r for r in pyproject["build-system"]["requires"] if r.startswith("setuptools")]
    assert ">=77" in setuptools  # the first setuptools that reads PEP 639 fields


def test_phone_photo_and_download_libraries_are_base_dependencies():
    names = _requirement_names(_pyproject()["project"]["dependencies"])
    assert {"pillow-heif", "pooch"} <= names
    [pillow] = [r for r in _pyproject()["project"]["dependencies"] if r.lower().startswith("pillow>")]
    assert ">=11.3" in pillow  # AVIF decoding in Pillow's wheels
