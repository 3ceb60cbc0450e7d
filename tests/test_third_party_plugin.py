"""A stranger's plugin, installed as a real package with an entry point, scans like a built-in.

The package is the documented example in docs/examples/domain_plugin/, installed with pip into a
throwaway target folder and put on PYTHONPATH of a real `tagteller` process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.builders import colour_model, solid_image

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "docs" / "examples" / "domain_plugin"
TAGTELLER = Path(sys.executable).parent / "tagteller"

# green, yellow, red from mean R, G, B
LEAF_WEIGHTS = np.array([[0.0, 0.06, 0.1], [0.1, 0.06, -0.05], [0.0, -0.1, 0.0]], np.float32)


def _pip_install(src: Path, target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(src)],
        check=True, capture_output=True, text=True,
    )


@pytest.fixture(scope="module")
def installed_site(tmp_path_factory):
    """Install the example plugin (with a model built here) and a plugin that breaks at import."""
    work = tmp_path_factory.mktemp("thirdparty")
    site = work / "site"
    leaves = work / "leaves"
    shutil.copytree(EXAMPLE, leaves, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    colour_model(leaves / "tagteller_leaves" / "leaves.onnx", domain="leaves",
                 labels=("green", "yellow", "red"), weights=LEAF_WEIGHTS)
    _pip_install(leaves, site)

    broken = work / "broken"
    (broken / "tagteller_broken").mkdir(parents=True)
    (broken / "tagteller_broken" / "__init__.py").write_text("raise RuntimeError('boom at import')\n")
    (broken / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tagteller-broken"\nversion = "0.0.1"\n'
        '[project.entry-points.tagteller]\nbroken = "tagteller_broken"\n'
        '[tool.setuptools]\npackages = ["tagteller_broken"]\n'
    )
    _pip_install(broken, site)
    return site


def _run(site: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site), TAGTELLER_HOME=str(home))
    env.pop("TAGTELLER_PLUGINS", None)
    return subprocess.run([str(TAGTELLER), *args], capture_output=True, text=True, env=env, timeout=120)


def test_installed_plugin_domain_scans(installed_site, tmp_path):
    for name, colour in (("leaf-green.png", (20, 200, 30)), ("leaf-yellow.png", (230, 220, 20)),
                         ("leaf-red.png", (210, 30, 20))):
        solid_image(tmp_path / name, colour)
    proc = _run(installed_site, tmp_path / "home", "scan", "--domain", "leaves", "--format", "jsonl", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    records = {Path(r["file"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    assert records["leaf-green.png"]["label"] == "green"
    assert records["leaf-yellow.png"]["label"] == "yellow"
    assert records["leaf-red.png"]["label"] == "red"
    assert {r["domain"] for r in records.values()} == {"leaves"}


def test_installed_plugin_is_listed_and_broken_one_is_named(installed_site, tmp_path):
    proc = _run(installed_site, tmp_path / "home", "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    names = {row["name"]: row for row in data["plugins"]}
    assert names["leaves"]["package"] == "tagteller-leaves"
    assert names["leaves"]["hooks"] == ["register_domains"]
    assert "shoes" in names  # built-ins load through the same entry-point group
    assert "broken" not in names
    failure = [f for f in data["failures"] if f["plugin"] == "broken"]
    assert failure and "boom at import" in failure[0]["error"]
    assert "plugin 'broken' failed in load" in proc.stderr


def test_allow_list_loads_only_named_plugins(installed_site, tmp_path):
    env_home = tmp_path / "home"
    env = dict(os.environ, PYTHONPATH=str(installed_site), TAGTELLER_HOME=str(env_home), TAGTELLER_PLUGINS="leaves")
    proc = subprocess.run([str(TAGTELLER), "domains", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [d["name"] for d in json.loads(proc.stdout)] == ["leaves"]
    assert "broken" not in proc.stderr  # not on the allow-list: never imported
