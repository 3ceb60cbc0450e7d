#!/usr/bin/env python3
"""Judge a domain's recipe over repeated splits: mean and spread of validation top-1, per class.

    .venv/bin/python scripts/crossval.py --domain shoes ../shared/datasets/shoes --repeats 3
    .venv/bin/python scripts/crossval.py --domain shoes DATA --set input_size=[240,240] \\
        --set backbone='"EfficientNetLite1"' --out /tmp/lite1.json

Each repeat is a whole ``tagteller train`` run (the same code path as a shipped model: split,
train, export, parity, ONNX measured with the engine) on a split drawn with another seed
(``Recipe.seed``; group-aware where the layout has groups, so a group never sits on both sides).
A single small validation split flatters or punishes a recipe by several points; the mean over
repeats, with its spread and the per-class recall, is what a recipe is chosen on (``--record
models/crossval.json`` files it for MODELS.md). Calibration is judged the same way: each repeat's
validation answers, scaled with a temperature fitted on the other half of its split, pooled over
the repeats into one ECE (:func:`tagteller.openset.pooled_calibration`; one split of a few dozen
images cannot tell an ECE of 0.05 from noise). Runs go to a
throwaway TAGTELLER_HOME; nothing is installed. ``--set key=JSON`` changes a recipe field.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", required=True)
    parser.add_argument("data", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=101)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="change a recipe field")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    parser.add_argument("--record", type=Path, metavar="JSON",
                        help="also file them under the domain's name in this file (models/crossval.json, which "
                             "scripts/models_md.py reads), with the command that measured them")
    args = parser.parse_args()

    os.environ.setdefault("TAGTELLER_HOME", tempfile.mkdtemp(prefix="tagteller-crossval-"))
    from tagteller import openset, plugins, runs
    from tagteller.domain import Phase
    from tagteller.train.trainer import TrainOptions, train_domain

    domain = plugins.get_domain(args.domain)
    changes = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        value = json.loads(raw)
        if key == "phases":
            value = tuple(Phase(**p) for p in value)
        elif key in ("input_size",):
            value = tuple(value)
        elif key == "augmentation":
            value = {**domain.recipe.augmentation, **value}
        changes[key] = value
    recipe = domain.recipe.with_(**changes)
    rows, validation = [], []
    for r in range(args.repeats):
        seed = args.first_seed + r
        trial = dataclasses.replace(domain, recipe=recipe.with_(seed=seed))
        out = Path(tempfile.mkdtemp(prefix="tagteller-crossval-model-")) / f"{domain.name}.onnx"
        started = time.monotonic()
        result = train_domain(trial, TrainOptions(data=args.data, fresh=True, force=True, install_to=out,
                                                  use_feedback=False), log=lambda text: None)
        m = result.metrics
        validation.append(validation_logits(trial, args.data, out))
        rows.append({"seed": seed, "val_accuracy": m.get("val_accuracy"), "macro_f1": m.get("macro_f1"),
                     "per_class_recall": m.get("per_class_recall"), "val_count": m.get("val_count"),
                     "epochs": len(runs.read_history(result.run_dir / runs.HISTORY).get("epochs") or []),
                     "seconds": round(time.monotonic() - started, 1)})
        print(json.dumps(rows[-1]), flush=True)
    accuracies = np.array([row["val_accuracy"] for row in rows], dtype=float)
    summary = {"domain": domain.name, "changes": args.set, "repeats": rows,
               "mean": round(float(accuracies.mean()), 4), "std": round(float(accuracies.std(ddof=1)), 4) if len(rows) > 1 else 0.0,
               "min": round(float(accuracies.min()), 4), "max": round(float(accuracies.max()), 4)}
    summary["calibration"] = openset.pooled_calibration(validation, seed=args.first_seed)
    recalls = [row["per_class_recall"] for row in rows if row["per_class_recall"]]
    if recalls:
        summary["per_class_recall_mean"] = {k: round(float(np.mean([r[k] for r in recalls])), 4) for k in recalls[0]}
        summary["balanced_accuracy_mean"] = round(float(np.mean([np.mean(list(r.values())) for r in recalls])), 4)
    f1s = [row["macro_f1"] for row in rows if row["macro_f1"] is not None]
    if f1s:
        summary["macro_f1_mean"] = round(float(np.mean(f1s)), 4)
    print(json.dumps({k: v for k, v in summary.items() if k != "repeats"}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    if args.record:
        from tagteller.atomic import atomic_write_text

        recorded = json.loads(args.record.read_text()) if args.record.is_file() else {}
        argv = sys.argv[1:]
        for option in ("--record", "--out"):  # where the figures went, not how they were measured
            if option in argv:
                del argv[argv.index(option):argv.index(option) + 2]
        recorded[domain.name] = {"command": shlex.join([".venv/bin/python", "scripts/crossval.py", *argv]),
                                 **{k: v for k, v in summary.items() if k not in ("domain", "changes")}}
        atomic_write_text(args.record, json.dumps(recorded, indent=1) + "\n")
    return 0


def validation_logits(domain, data: Path, model: Path) -> tuple[np.ndarray, np.ndarray]:
    """The trained ``model``'s logits and true labels on its validation split (the split
    ``domain``'s recipe draws from ``data``; checked against the one recorded in the model). The
    model outputs ``softmax(logits / T)``: ``T * log(p)`` gives the logits back, up to a constant
    per image that softmax ignores."""
    from tagteller.engine import Engine
    from tagteller.evaluate.measure import measure
    from tagteller.train.trainer import prepare_data

    split = prepare_data(domain, data, domain.recipe, use_feedback=False, log=lambda text: None)
    engine = Engine()
    try:
        loaded = engine.load(model)
        info = loaded.info
        if split.val_keys_sha256 != info.training.get("val_keys_sha256"):
            raise SystemExit(f"error: {model}: its validation split is not the one the recipe draws again")
        labels = list(info.labels)
        measured = measure(engine, loaded, [s.source for s in split.val], [s.label for s in split.val],
                           names=[s.key for s in split.val], label_order=labels, top_k=len(labels))
    finally:
        engine.close()
    keep = measured.answered
    probabilities = np.clip(measured.probs[keep][:, :len(labels)], 1e-30, None)
    return info.calibration["temperature"] * np.log(probabilities), measured.true[keep]


if __name__ == "__main__":
    sys.exit(main())
