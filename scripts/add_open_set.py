#!/usr/bin/env python3
"""Give an exported model calibration and an open-set score, keeping its trained network.

    .venv/bin/python scripts/add_open_set.py --domain apparel ../shared/datasets/fashion-mnist \\
        --model models/apparel.onnx --unknown-data shoes=../shared/datasets/shoes ...

For a model whose Keras checkpoint is gone (``tagteller export --data`` does the same from a
checkpoint): the domain's validation split (its recipe's seed) fits the temperature and sets the
threshold, up to 1,000 training images stand for the domain in the gate, and the unknown images
come from ``--unknown-data`` plus generated ones (:mod:`tagteller.train.open_set`). The network's
top-1 answers are unchanged (checked); the file is replaced atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", required=True)
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--unknown-data", action="append", default=[])
    parser.add_argument("--output", type=Path, help="default: replace --model")
    args = parser.parse_args()

    import onnx

    from tagteller import plugins
    from tagteller.engine import Engine
    from tagteller.modelfile import parse_metadata
    from tagteller.train.export import write_model_file
    from tagteller.train.open_set import OOD_OUTPUT, add_open_set, find_heads
    from tagteller.train.pipeline import decode_samples
    from tagteller.train.trainer import GATE_OWN_IMAGES, open_set_data, prepare_data

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    domain = plugins.get_domain(args.domain)
    proto = onnx.load(str(args.model))
    info = parse_metadata({p.key: p.value for p in proto.metadata_props}, str(args.model))
    if info.open_set is not None:  # refit: start again from the network without the added nodes
        log(f"{args.model}: already has an open-set score; refitting needs the file it was exported as")
        return 2
    find_heads(proto)
    recipe = domain.recipe.with_(input_size=info.input_size, preprocessing=info.preprocessing)
    data = prepare_data(domain, args.data, recipe, use_feedback=False, log=log)
    index = {label: i for i, label in enumerate(info.labels)}
    val = decode_samples(data.val, index, recipe.input_size, recipe.preprocessing)
    rng = np.random.default_rng(recipe.seed)
    picked = [data.train[i] for i in rng.permutation(len(data.train))[:GATE_OWN_IMAGES]]
    own = decode_samples(picked, index, recipe.input_size, recipe.preprocessing)
    gate = open_set_data(val.labels, own.images, args.unknown_data, recipe, recipe.seed, log)
    fit = add_open_set(proto, val.images.astype(np.float32), gate.val_labels, gate.own_images,
                       gate.unknown_images, gate.sources, gate.seed)
    output = args.output or args.model
    write_model_file(fit.proto, dataclasses.replace(info, open_set=fit.open_set, calibration=fit.calibration), output)
    loaded = Engine().load(output)
    assert loaded.info.open_set["output"] == OOD_OUTPUT
    log(f"wrote {output}: temperature {fit.calibration['temperature']:.3f}, ECE {fit.calibration['ece_before']:.3f} -> "
        f"{fit.calibration['ece_after']:.3f}; threshold {fit.open_set['threshold']:.4f} rejects "
        f"{fit.open_set['val_false_rejection']:.1%} of {len(val)} validation images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
