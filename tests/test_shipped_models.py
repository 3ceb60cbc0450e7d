"""The models in models/: self-describing, small enough, calibrated, and answering ``unknown``
for what no domain knows; with ../shared, their own validation images are accepted.

The full domain x source matrix is ``scripts/open_set_matrix.py`` (MODELS.md); these are the
checks that must never regress and that run in seconds.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from tagteller import plugins
from tagteller.datasets import stratified_split
from tagteller.engine import Engine
from tagteller.openset import synthetic_unknowns
from tagteller_models import MODELS_DIR
from tests.conftest import shared_dataset

SHIPPED = sorted(p.stem for p in MODELS_DIR.glob("*.onnx"))
DATASETS = {"apparel": "fashion-mnist", "shoes": "shoes", "products": "products", "books": "book-covers",
            "clothing-tags": "clothing-tags", "trousers": "trousers"}
MAX_TOTAL_BYTES = 40 * 1024 * 1024


def test_every_builtin_domain_ships_a_model_and_they_fit_the_budget():
    assert set(SHIPPED) == set(DATASETS)
    total = sum(p.stat().st_size for p in MODELS_DIR.glob("*.onnx"))
    assert total < MAX_TOTAL_BYTES, f"models/ is {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("domain", SHIPPED)
def test_plain_onnxruntime_gets_probabilities_score_and_threshold(domain):
    session = ort.InferenceSession(str(MODELS_DIR / f"{domain}.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    spec, open_set, calibration = (json.loads(meta[k]) for k in ("input", "open_set", "calibration"))
    assert meta["domain"] == domain
    assert [o.name for o in session.get_outputs()][:2] == ["probabilities", open_set["output"]]
    assert 0 < open_set["threshold"] < 1 and open_set["val_false_rejection"] <= 0.05
    assert calibration["temperature"] > 0 and calibration["ece_after"] <= calibration["ece_before"] + 0.01
    x = np.full((2, spec["height"], spec["width"], spec["channels"]), 128, np.float32)
    probs, score = session.run(["probabilities", open_set["output"]], {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert score.shape == (2,) and np.all((score >= 0) & (score <= 1))


@pytest.mark.parametrize("domain", SHIPPED)
def test_generated_noise_and_flat_images_are_unknown(domain):
    engine = Engine(intra_threads=1)
    model = engine.load(MODELS_DIR / f"{domain}.onnx")
    images, kinds = synthetic_unknowns(40, 256, 256, 3, seed=31337)  # a seed and a size no gate saw
    keep = [i for i, k in enumerate(kinds) if k in ("noise", "smooth-noise", "flat")]
    results = list(engine.scan(model, [images[i].astype(np.uint8) for i in keep], top_k=1))
    unknown = np.mean([r.status == "unknown" for r in results])
    assert unknown >= 0.9, f"{domain}: only {unknown:.0%} of generated images answered unknown"


@pytest.mark.parametrize("domain", [d for d in SHIPPED if d != "apparel"])  # apparel: 10,000 images, see MODELS.md
def test_own_validation_images_are_accepted(domain):
    data_dir = shared_dataset(DATASETS[domain])
    spec = plugins.get_domain(domain)
    data = spec.layout.load(data_dir, spec.labels)
    _, val = stratified_split(list(data.samples), spec.recipe.val_fraction, spec.recipe.seed)
    engine = Engine()
    model = engine.load(MODELS_DIR / f"{domain}.onnx")
    results = list(engine.scan(model, [s.source for s in val], top_k=1))
    rejected = np.mean([r.status == "unknown" for r in results])
    # the threshold was chosen on exactly these images through this decode path
    assert rejected <= 0.05 + 1e-9, f"{domain}: {rejected:.1%} of its own validation images answered unknown"
    accuracy = np.mean([r.top.label == s.label for r, s in zip(results, val)])
    assert accuracy == pytest.approx(model.info.metrics["val_accuracy"], abs=1e-6)
