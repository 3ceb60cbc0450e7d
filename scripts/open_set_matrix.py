#!/usr/bin/env python3
"""Measure the shipped models' "unknown" answers: per model, the share of each source's images it
rejects, and how often a scan without --domain names the right domain.

    .venv/bin/python scripts/open_set_matrix.py --out models/open_set_matrix.json

Sources are each domain's **validation** split (its recipe's seed: images no model trained on,
its own model's or another's gate; at most 600 a source, a seeded sample, except on the diagonal,
which uses the whole split) and generated noise and flat colour images, drawn at 256x256 (a
seed and a size no gate saw). The diagonal is the false rejection (<= 5% wanted); off the
diagonal, the share answered ``unknown`` (>= 90% wanted where the domains plainly differ). Then
every sampled validation image of every domain is scanned with all the models
(:meth:`tagteller.engine.Engine.scan_any`): ``accuracy`` counts answers whose domain is the
image's and that were accepted; ``named_accuracy`` also counts an ``unknown`` answer that names
the image's domain as the closest; the time per image of that scan and of one model's is given. ``scripts/models_md.py`` writes the figures into
MODELS.md. Uses the engine only: no tensorflow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATASETS = {"apparel": "fashion-mnist", "shoes": "shoes", "products": "products", "books": "book-covers",
            "clothing-tags": "clothing-tags", "trousers": "trousers"}
#: Apparel's validation side is 10,000 images: a seeded sample keeps the matrix quick.
MAX_PER_SOURCE = 600
#: The mixed set of issue 14's acceptance ("validation images of the five domains").
ISSUE_DOMAINS = ("apparel", "shoes", "products", "books", "clothing-tags")


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
    whole: dict[str, list] = {}
    for name, folder in DATASETS.items():
        domain = plugins.get_domain(name)
        data = domain.layout.load(args.datasets / folder, domain.labels)
        _, val = stratified_split(list(data.samples), domain.recipe.val_fraction, domain.recipe.seed)
        whole[name] = val
        rng = np.random.default_rng(0)
        sources[name] = [val[i] for i in sorted(rng.permutation(len(val))[:MAX_PER_SOURCE])]
    generated, kinds = synthetic_unknowns(400, 256, 256, 3, seed=2024)
    kinds_arr = np.array(kinds)
    synthetic = {"noise": list(generated[np.isin(kinds_arr, ["noise", "smooth-noise"])].astype(np.uint8)),
                 "flat": list(generated[kinds_arr == "flat"].astype(np.uint8))}

    matrix: dict[str, dict[str, float]] = {}
    for model_name, loaded in models.items():
        row = {}
        for source_name, samples in sources.items():
            samples = whole[source_name] if source_name == model_name else samples
            results = list(engine.scan(loaded, [s.source for s in samples], top_k=1))
            row[source_name] = round(float(np.mean([r.status == "unknown" for r in results if r.ok])), 4)
        for kind, images in synthetic.items():
            results = list(engine.scan(loaded, images, top_k=1))
            row[kind] = round(float(np.mean([r.status == "unknown" for r in results if r.ok])), 4)
        matrix[model_name] = row
        print(model_name, json.dumps(row), flush=True)

    right, named, total, confusion, any_seconds, one_seconds = 0, 0, 0, {}, 0.0, 0.0
    per_source: dict[str, list[int]] = {}  # source -> [accepted by its own domain, named it, images]
    for source_name, samples in sources.items():
        started = time.perf_counter()
        results = list(engine.scan_any(list(models.values()), [s.source for s in samples], top_k=1))
        any_seconds += time.perf_counter() - started
        started = time.perf_counter()
        list(engine.scan(models[source_name], [s.source for s in samples], top_k=1))
        one_seconds += time.perf_counter() - started
        for r in results:
            answer = "unknown" if r.unknown else r.domain
            confusion.setdefault(source_name, {}).setdefault(answer, 0)
            confusion[source_name][answer] += 1
            right += answer == source_name
            named += r.domain == source_name
            total += 1
            counts = per_source.setdefault(source_name, [0, 0, 0])
            counts[0] += answer == source_name
            counts[1] += r.domain == source_name
            counts[2] += 1
    no_domain = {"accuracy": round(right / total, 4), "named_accuracy": round(named / total, 4), "images": total,
                 "ms_per_image_all_models": round(1000 * any_seconds / total, 2),
                 "ms_per_image_own_model": round(1000 * one_seconds / total, 2), "answers": confusion}
    # Issue 14 names five domains' images (trousers came later): the same figures on those alone,
    # every model still answering.
    five = [per_source[d] for d in ISSUE_DOMAINS if d in per_source]
    if five:
        images = sum(c[2] for c in five)
        no_domain["five_domains"] = {"domains": [d for d in ISSUE_DOMAINS if d in per_source], "images": images,
                                     "accuracy": round(sum(c[0] for c in five) / images, 4),
                                     "named_accuracy": round(sum(c[1] for c in five) / images, 4)}
    print("no --domain:", json.dumps(no_domain), flush=True)
    atomic_write_text(args.out, json.dumps({"matrix": matrix, "no_domain": no_domain,
                                            "command": "scripts/open_set_matrix.py"}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
