"""The shipped models and MODELS.md record no absolute path of the machine that built them (the
data set's name and the command relative to the repository instead)."""

from __future__ import annotations

import json
import re

import pytest

from tagteller.engine import read_model_info
from tests.conftest import REPO

#: An absolute path: a root-level folder name after "/" (not a URL's "//", not a relative a/b).
ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[A-Za-z0-9_.-]+/)+[A-Za-z0-9_.-]*")
MODELS = sorted((REPO / "models").glob("*.onnx"))


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.name)
def test_model_metadata_keeps_no_absolute_path(model):
    info = read_model_info(model)
    text = json.dumps({"training": info.training, "metrics": info.metrics})
    assert not ABSOLUTE.findall(text), ABSOLUTE.findall(text)[:5]
    command = info.training.get("command_line", "")
    if command:
        assert command.startswith("tagteller train ") and "../shared/datasets/" in command


def test_models_md_keeps_no_absolute_path():
    text = (REPO / "models" / "MODELS.md").read_text(encoding="utf-8")
    found = [m for m in ABSOLUTE.findall(text) if not m.startswith(("/v1/", "/docs"))]
    assert not found, found[:5]


def test_the_pattern_finds_absolute_paths():
    assert ABSOLUTE.findall("--install-to /work/main/models/shoes.onnx") == ["/work/main/models/shoes.onnx"]
    assert not ABSOLUTE.findall("--install-to models/shoes.onnx ../shared/datasets/shoes https://x.org/a/b")
