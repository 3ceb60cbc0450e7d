#!/usr/bin/env python3
"""Store a model's class references (what taught labels are scored against), keeping its network.

    .venv/bin/python scripts/add_class_references.py --domain shoes ../shared/datasets/shoes --model models/shoes.onnx
    .venv/bin/python scripts/add_class_references.py --all   # the six shipped models, from ../shared/datasets

The domain's validation split (the recipe's seed and fraction, as ``tagteller train`` draws it:
:func:`tagteller.train.trainer.prepare_data`, checked against the split the model records) is run
through the model's own ``embedding`` output with onnxruntime, and
:func:`tagteller.taught.class_references` (per-class prototypes as float16 plus similarity
statistics) is written into the metadata key ``class_references``. Nothing else in the file
changes; re-running replaces the references; no TensorFlow is needed. ``tagteller train`` writes
them at export itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO.parent / "shared" / "datasets"
#: The shipped models and their datasets.
SHIPPED = {"apparel": "fashion-mnist", "books": "book-covers", "clothing-tags": "clothing-tags",
           "products": "products", "shoes": "shoes", "trousers": "trousers"}


def validation_embeddings(domain, data: Path, model_path: Path, log) -> tuple[np.ndarray, np.ndarray, object]:
    """The model's embeddings of the domain's validation images, their class indices, and the
    loaded model; the split is checked against the one the model records (when it does)."""
    from tagteller.engine import Engine
    from tagteller.sample_decoding import decode_samples
    from tagteller.train.trainer import prepare_data

    model = Engine().load(model_path)
    info = model.info
    recipe = domain.recipe.with_(input_size=info.input_size, preprocessing=info.preprocessing)
    prepared = prepare_data(domain, data, recipe, use_feedback=False, log=log)
    recorded = info.training.get("val_keys_sha256")
    if recorded and recorded != prepared.val_keys_sha256:
        raise SystemExit(f"{model_path}: the validation split drawn now is not the one the model records")
    index = {label: i for i, label in enumerate(info.labels)}
    val = [s for s in prepared.val if s.label in index]
    decoded = decode_samples(val, index, recipe.input_size, recipe.preprocessing)
    images = decoded.images.astype(np.float32)
    embeddings = np.concatenate([model.embed(images[i:i + 64]) for i in range(0, len(images), 64)])
    return embeddings, np.asarray(decoded.labels, int), model


def add_references(domain_name: str, data: Path, model_path: Path, output: Path | None, log) -> dict:
    import onnx

    from tagteller import plugins
    from tagteller.modelfile import embed_metadata, parse_metadata, save_model
    from tagteller.taught import class_references

    domain = plugins.get_domain(domain_name)
    embeddings, labels, model = validation_embeddings(domain, data, model_path, log)
    refs = class_references(embeddings, labels, model.info.labels, seed=domain.recipe.seed)
    proto = onnx.load(str(model_path))
    info = parse_metadata({p.key: p.value for p in proto.metadata_props}, str(model_path))
    embed_metadata(proto, dataclasses.replace(info, class_references=refs))
    save_model(proto, output or model_path)
    log(f"{output or model_path}: class references from {len(labels)} validation images, "
        f"{len(refs['prototypes'])} characters of prototypes; temperature {refs['temperature']}, "
        f"shot deficit {refs['shot_deficit']}, accept similarity {refs['accept_similarity']}, "
        f"prototype accuracy {refs['prototype_accuracy']}")
    return refs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain")
    parser.add_argument("data", type=Path, nargs="?")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--output", type=Path, help="default: replace --model")
    parser.add_argument("--all", action="store_true", help="every shipped model in models/, data from --datasets")
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    args = parser.parse_args()

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if args.all:
        for name, folder in SHIPPED.items():
            add_references(name, args.datasets / folder, REPO / "models" / f"{name}.onnx", None, log)
        return 0
    if not (args.domain and args.data and args.model):
        parser.error("give --domain, DATA and --model (or --all)")
    add_references(args.domain, args.data, args.model, args.output, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
