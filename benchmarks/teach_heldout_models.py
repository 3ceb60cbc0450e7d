#!/usr/bin/env python
"""Stage 1 of the teach benchmark (issue #20): for each photo domain and each of its classes,
train the domain's own recipe WITHOUT that class, so the taught class is one the model's
embedding never saw (the shipped models were trained with every class: using them would leak it).

    nice -n 10 .venv/bin/python benchmarks/teach_heldout_models.py --out /tmp/teach-bench/models \\
        [--only shoes,products] [--time-budget 240]

Each model is a whole ``tagteller train`` run (:func:`tagteller.train.trainer.train_domain`: the
domain's recipe, its split with the recipe's seed, cached prefix features, export with the
``embedding`` output), on the domain with the held-out label removed from its labels (its photos
are skipped as foreign). The other classes' validation split is the shipped model's (the split is
drawn per label). ``--time-budget`` caps each run's training (the recipe's stopping policy stops
it sooner when it plateaus). Already trained models are kept (the script resumes), and the wall
time and validation figures of each run go to ``<out>/runs.json``.

Only this stage imports TensorFlow; ``benchmarks/teach.py`` measures on the models it leaves.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO.parent / "shared" / "datasets"
#: The photo domains and their datasets, cheapest training first.
PHOTO_DOMAINS = {"clothing-tags": "clothing-tags", "products": "products", "books": "book-covers",
                 "shoes": "shoes", "trousers": "trousers"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "teach-bench" / "models")
    parser.add_argument("--only", default="", help="comma-separated domains (default: every photo domain)")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds of training per run")
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    args = parser.parse_args()

    os.environ["TAGTELLER_HOME"] = tempfile.mkdtemp(prefix="tagteller-teach-bench-")
    from tagteller import plugins
    from tagteller.train.trainer import TrainOptions, train_domain

    args.out.mkdir(parents=True, exist_ok=True)
    ledger_path = args.out / "runs.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    domains = [d for d in args.only.split(",") if d] or list(PHOTO_DOMAINS)
    for name in domains:
        domain = plugins.get_domain(name)
        for held in domain.labels:
            out = args.out / name / f"without-{held}.onnx"
            if out.is_file():
                print(f"{name} without {held}: kept {out}", flush=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            trial = dataclasses.replace(domain, labels=tuple(x for x in domain.labels if x != held),
                                        allow_new_labels=False)
            started = time.monotonic()
            result = train_domain(trial, TrainOptions(data=args.datasets / PHOTO_DOMAINS[name], fresh=True,
                                                      force=True, install_to=out, use_feedback=False,
                                                      time_budget_s=args.time_budget),
                                  log=lambda text: None)
            seconds = round(time.monotonic() - started, 1)
            m = result.metrics
            ledger[f"{name}/{held}"] = {"model": str(out), "seconds": seconds,
                                        "val_accuracy": m.get("val_accuracy"), "val_count": m.get("val_count")}
            ledger_path.write_text(json.dumps(ledger, indent=1) + "\n")
            print(f"{name} without {held}: {seconds} s, val accuracy {m.get('val_accuracy')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
