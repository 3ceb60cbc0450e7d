#!/usr/bin/env python3
"""Give an exported model calibration and an open-set score, keeping its trained network.

    .venv/bin/python scripts/add_open_set.py --domain apparel ../shared/datasets/fashion-mnist \\
        --model models/apparel.onnx --unknown-data shoes=../shared/datasets/shoes ...

For a model whose Keras checkpoint is gone (``tagteller export --data`` does the same from a
checkpoint), or to refit a model that has them already (its added nodes are stripped first:
:func:`tagteller.openset_graph.strip_open_set`; an int8 model keeps its int8 network): the domain's validation split (its recipe's seed) fits the temperature and sets the
threshold, up to 1,000 training images stand for the domain in the gate, and the unknown images
come from ``--unknown-data`` plus generated ones (:mod:`tagteller.openset_graph`). The network's
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
    parser.add_argument("--half-weights", action="store_true",
                        help="store a float model's large weights as float16 (half the file; computed in float32) "
                             "and re-measure it; refused when validation top-1 drops by more than a point")
    args = parser.parse_args()

    import onnx

    from tagteller import plugins
    from tagteller.engine import Engine
    from tagteller.modelfile import parse_metadata
    from tagteller.train.export import INT8_MAX_DROP, half_precision_weights, write_model_file
    from tagteller.evaluate.measure import measure_model
    from tagteller.openset_graph import OOD_OUTPUT, add_open_set, find_heads, strip_open_set
    from tagteller.sample_decoding import decode_samples
    from tagteller.train.trainer import GATE_OWN_IMAGES, open_set_data, prepare_data

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    domain = plugins.get_domain(args.domain)
    proto = onnx.load(str(args.model))
    info = parse_metadata({p.key: p.value for p in proto.metadata_props}, str(args.model))
    if info.open_set is not None:  # refit: start again from the network without the added nodes
        log(f"{args.model}: refitting its open-set score and calibration")
        proto = strip_open_set(proto)
    find_heads(proto)
    if args.half_weights and info.metrics.get("quantization"):
        log(f"{args.model}: already {info.metrics['quantization']}; its weights stay as they are")
        args.half_weights = False
    if args.half_weights:
        proto = half_precision_weights(proto)
    recipe = domain.recipe.with_(input_size=info.input_size, preprocessing=info.preprocessing)
    data = prepare_data(domain, args.data, recipe, use_feedback=False, log=log)
    index = {label: i for i, label in enumerate(info.labels)}
    val = decode_samples(data.val, index, recipe.input_size, recipe.preprocessing)
    rng = np.random.default_rng(recipe.seed)
    picked = [data.train[i] for i in rng.permutation(len(data.train))[:GATE_OWN_IMAGES]]
    own = decode_samples(picked, index, recipe.input_size, recipe.preprocessing)
    gate = open_set_data(val.labels, own.images, args.unknown_data, recipe, recipe.seed, log)
    fit = add_open_set(proto, val.images.astype(np.float32), gate.val_labels, gate.own_images,
                       gate.unknown_images, gate.sources, gate.seed, recipe.preprocessing)
    output = args.output or args.model
    info = dataclasses.replace(info, open_set=fit.open_set, calibration=fit.calibration)
    # measure the file as it will be used, before it replaces anything
    staged = output.with_name(output.stem + ".staged.onnx")
    write_model_file(fit.proto, info, staged)
    m = measure_model(staged, data.val)
    staged.unlink()
    before = info.metrics
    metrics = {**before, **m.as_metrics()}
    if args.half_weights:
        drop = float(before["val_accuracy"]) - m.accuracy
        figures = {"val_accuracy": round(m.accuracy, 6), "macro_f1": round(m.macro_f1, 6),
                   "size_bytes": len(fit.proto.SerializeToString()), "float_size_bytes": args.model.stat().st_size,
                   "accuracy_drop": round(drop, 6), "kept": drop <= INT8_MAX_DROP + 1e-12}
        log(f"fp16 weights: accuracy {m.accuracy:.4f} (float {before['val_accuracy']:.4f}), "
            f"{figures['size_bytes'] / 1e6:.2f} MB vs {figures['float_size_bytes'] / 1e6:.2f} MB")
        if not figures["kept"]:
            log("refused: more than a point lost")
            return 1
        metrics.update({"quantization": "fp16-weights", "fp16": figures,
                        "float": {"val_accuracy": before["val_accuracy"], "macro_f1": before["macro_f1"]}})
    elif m.accuracy != before.get("val_accuracy"):
        log(f"validation accuracy now {m.accuracy:.4f} (was {before.get('val_accuracy')})")
    info = dataclasses.replace(info, metrics=metrics)
    write_model_file(fit.proto, info, output)
    loaded = Engine().load(output)
    assert loaded.info.open_set["output"] == OOD_OUTPUT
    log(f"wrote {output}: temperature {fit.calibration['temperature']:.3f}, ECE {fit.calibration['ece_before']:.3f} -> "
        f"{fit.calibration['ece_after']:.3f}; threshold {fit.open_set['threshold']:.4f} rejects "
        f"{fit.open_set['val_false_rejection']:.1%} of {len(val)} validation images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
