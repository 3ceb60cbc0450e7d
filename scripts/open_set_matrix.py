#!/usr/bin/env python3
"""Measure the shipped models' "unknown" answers: per model, the share of each source's images it
rejects, and how often a scan without --domain names the right domain.

    .venv/bin/python scripts/open_set_matrix.py --out models/open_set_matrix.json

Sources are each domain's **validation** split (its recipe's seed: images no model trained on,
its own model's or another's gate) and generated noise and flat colour images (a seed no gate
saw). The diagonal is the false rejection (<= 5% wanted); off the diagonal, the share answered
``unknown`` (>= 90% wanted where the domains plainly differ). Then every validation image of
every domain is scanned with all the models (:meth:`tagteller.engine.Engine.scan_any`) and the
answer's domain compared with the image's. ``scripts/models_md.py`` writes the figures into
MODELS.md. Uses the engine only: no tensorflow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATASETS = {"apparel": "fashion-mnist", "shoes": "shoes", "products": "products", "books": "book-covers",
            "clothing-tags": "clothing-tags", "trousers": "trousers"}
#: Apparel's validation side is 10,000 images: a seeded sample keeps the matrix quick.
MAX_PER_SOURCE = 600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=Path(os.environ.get("TAGTELLER_DATASETS", REPO.parent / "shared" / "datasets")))
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--out", type=Path, default=REPO / "models" / "open_set_matrix.json")
    args = parser.parse_args()

    from tagteller import plugins
    from tagteller.atomic import atomic_write_text
    from tagteller.datasets import stratified_split
    from tagteller.engine import Engine
    from tagteller.openset import synthetic_unknowns

    engine = Engine()
    models = {d: engine.load(args.models / f"{d}.onnx") for d in DATASETS if (args.models / f"{d}.onnx").is_file()}
    sources: dict[str, list] = {}
    for name, folder in DATASETS.items():
        domain = plugins.get_domain(name)
        data = domain.layout.load(args.datasets / folder, domain.labels)
        _, val = stratified_split(list(data.samples), domain.recipe.val_fraction, domain.recipe.seed)
        rng = np.random.default_rng(0)
        val = [val[i] for i in sorted(rng.permutation(len(val))[:MAX_PER_SOURCE])]
        sources[name] = val
    generated, kinds = synthetic_unknowns(400, 256, 256, 3, seed=2024)
    kinds_arr = np.array(kinds)
    synthetic = {"noise": list(generated[np.isin(kinds_arr, ["noise", "smooth-noise"])].astype(np.uint8)),
                 "flat": list(generated[kinds_arr == "flat"].astype(np.uint8))}

    matrix: dict[str, dict[str, float]] = {}
    for model_name, loaded in models.items():
        row = {}
        for source_name, samples in sources.items():
            results = list(engine.scan(loaded, [s.source for s in samples], top_k=1))
            row[source_name] = round(float(np.mean([r.status == "unknown" for r in results if r.ok])), 4)
        for kind, images in synthetic.items():
            results = list(engine.scan(loaded, images, top_k=1))
            row[kind] = round(float(np.mean([r.status == "unknown" for r in results if r.ok])), 4)
        matrix[model_name] = row
        print(model_name, json.dumps(row), flush=True)

    right, total, confusion = 0, 0, {}
    for source_name, samples in sources.items():
        results = list(engine.scan_any(list(models.values()), [s.source for s in samples], top_k=1))
        for r, s in zip(results, samples):
            answer = "unknown" if r.unknown else r.domain
            confusion.setdefault(source_name, {}).setdefault(answer, 0)
            confusion[source_name][answer] += 1
            right += answer == source_name
            total += 1
    no_domain = {"accuracy": round(right / total, 4), "images": total, "answers": confusion}
    print("no --domain:", json.dumps(no_domain), flush=True)
    atomic_write_text(args.out, json.dumps({"matrix": matrix, "no_domain": no_domain,
                                            "command": "scripts/open_set_matrix.py"}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
