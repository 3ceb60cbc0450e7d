"""CLI details a new user meets: ``--version``, ``info DOMAIN``, ``domains`` with each model's
validation accuracy."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import tagteller
from tagteller import Domain, plugins
from tests.builders import colour_model
from tests.conftest import REPO
from tests.test_cli_core import run


def register(*domains):
    class Plugin:
        @tagteller.hookimpl
        def register_domains(self, register):
            for domain in domains:
                register(domain)

    plugins.register_plugin(Plugin(), "details-plugin")


def test_version_matches_the_package():
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"tagteller {tagteller.__version__}"
    with open(REPO / "pyproject.toml", "rb") as fh:
        assert tomllib.load(fh)["project"]["version"] == tagteller.__version__


def test_version_as_a_process():
    out = subprocess.run([sys.executable, "-m", "tagteller", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"tagteller {tagteller.__version__}"


def test_info_takes_a_domain_name(tmp_path, monkeypatch):
    monkeypatch.setenv("TAGTELLER_PLUGINS", "")
    model = colour_model(tmp_path / "c.onnx", model_version="42")
    register(Domain(name="colours", description="c", labels=("red", "green", "blue"), model_path=model),
             Domain(name="untrained", description="u", labels=("a", "b")))
    monkeypatch.chdir(tmp_path)
    result = run("info", "colours", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["domain"] == "colours" and data["model_version"] == "42" and data["file"] == str(model)
    result = run("info", "untrained")
    assert result.exit_code == 2 and "has no model yet" in result.stderr
    result = run("info", "nosuch")
    assert result.exit_code == 2 and "unknown domain 'nosuch'" in result.stderr
    assert run("info", str(model), "--json").exit_code == 0  # a model file still works


def test_shipped_domain_info_without_a_models_path():
    result = run("info", "shoes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["domain"] == "shoes"


def test_domains_show_validation_accuracy(tmp_path, monkeypatch):
    monkeypatch.setenv("TAGTELLER_PLUGINS", "")
    model = colour_model(tmp_path / "c.onnx", metrics={"val_accuracy": 0.871, "val_count": 81})
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    register(Domain(name="colours", description="c", labels=("red", "green", "blue"), model_path=model),
             Domain(name="broken", description="b", labels=("a", "b"), model_path=broken),
             Domain(name="untrained", description="u", labels=("a", "b")))
    rows = {row["name"]: row for row in json.loads(run("domains", "--json").stdout)}
    assert rows["colours"]["val_accuracy"] == 0.871 and rows["colours"]["val_count"] == 81
    assert rows["untrained"]["val_accuracy"] is None
    assert rows["broken"]["val_accuracy"] is None and rows["broken"]["model_problem"]
    monkeypatch.setenv("COLUMNS", "200")
    table = run("domains").stdout
    assert "87.1% (81 images)" in table and "unreadable model" in table
