"""scripts/build_models.py: the temperature a rebuilt model is calibrated with comes from the
recipe figures crossval.py recorded (models/crossval.json), and only from there; the shipped
models carry it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("build_models_script", REPO / "scripts" / "build_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_temperature_is_passed_where_crossval_recorded_one(tmp_path):
    build = _script()
    assert build.recipe_temperature("shoes", tmp_path) == []  # no crossval.json
    (tmp_path / "crossval.json").write_text(json.dumps({
        "shoes": {"mean": 0.9, "calibration": {"ece": 0.03, "temperature": 0.62542}},
        "books": {"mean": 0.5, "calibration": {"ece": 0.07}},  # recorded before temperatures were
        "trousers": {"mean": 0.9}}))
    assert build.recipe_temperature("shoes", tmp_path) == ["--temperature", "0.62542"]
    assert build.recipe_temperature("books", tmp_path) == []
    assert build.recipe_temperature("trousers", tmp_path) == []
    assert build.recipe_temperature("products", tmp_path) == []


def test_shipped_models_carry_the_temperature_their_recipe_recorded():
    """What build_models.py would pass is what each shipped model was calibrated with."""
    from tagteller.engine import read_model_info

    recorded = json.loads((REPO / "models" / "crossval.json").read_text())
    given = 0
    for domain, figures in recorded.items():
        temperature = (figures.get("calibration") or {}).get("temperature")
        calibration = read_model_info(REPO / "models" / f"{domain}.onnx").calibration
        if temperature:
            given += 1
            assert calibration["temperature"] == temperature, domain
            assert "given" in calibration["method"], domain
        else:
            assert "temperature_fitted_here" not in calibration, domain
    assert given >= 4  # shoes, products, books, clothing-tags
