#!/usr/bin/env python
"""Benchmark 4, the training input pipeline: images/s of whole training epochs fed by the
project's pipeline (:mod:`tagteller.train.pipeline`: decode once with the engine's ``prepare``,
then ``tf.data`` with the recipe's augmentation) against Keras' ``ImageDataGenerator
.flow_from_directory`` (what the seed projects used), on the same folder and the same model.

Both sides train the benchmark ``.keras`` model (the shoes recipe) from the same starting weights,
in the recipe's first phase (the head, backbone frozen), with the recipe's batch size and input
size, for ``--epochs`` epochs, each timed on its own, the sides' epochs interleaved (every side's
epoch 1, then every side's epoch 2, ...) so drift in the machine's speed hits them alike. Epoch 1
includes, for both, the tracing of the training step, and for tagteller the one-time decoding of
the folder; later epochs are the steady state. ``ImageDataGenerator`` runs twice: with horizontal
flips only (the least work a seed could ask of it), and with the nearest equivalent of the recipe's
augmentation, flips, rotation and zoom (it needs scipy for those; it has no contrast augmentation,
so it still does less than the tf.data side). The ratio is taken against the second. A last column
runs the same training step on batches already in memory with no augmentation: the ceiling no input
pipeline can pass. Target (issue #7): tf.data training input >= 2x ImageDataGenerator.

    .venv/bin/python benchmarks/training_input.py [--data DIR] [--epochs 5] [--phase 0]
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit  # noqa: E402

TARGET_RATIO = 2.0


def quick_folder(cache: Path) -> Path:
    """A small folder-per-class copy of the shoes photos (synthetic ones when absent)."""
    folder = cache / "quick-shoes"
    if (folder / "complete").is_file():
        return folder
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("adidas", "converse", "nike"):
        (folder / label).mkdir(parents=True, exist_ok=True)
        src = sorted((benchkit.SHOES_DATA / label).glob("*.jpg"))[:8] if benchkit.SHOES_DATA.is_dir() else []
        for i in range(8):
            dest = folder / label / f"{i}.jpg"
            if i < len(src):
                shutil.copyfile(src[i], dest)
            else:
                Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(dest, quality=90)
    (folder / "complete").write_text("ok")
    return folder


def main() -> int:
    p = benchkit.parser(__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="folder-per-class photos (default: the shared shoes set)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per side, each timed (default 5)")
    p.add_argument("--phase", type=int, default=0, help="which recipe phase's trainable layers (default 0: the head)")
    args = p.parse_args()
    if not benchkit.has_tensorflow():
        raise SystemExit("error: this benchmark needs the [train] extra (tensorflow)")
    m = benchkit.machine()
    model_files = benchkit.ensure_model(args, need_keras=True)
    cache = benchkit.cache_root(args.cache)
    if args.data is not None:
        folder = args.data
    elif args.quick or not benchkit.SHOES_DATA.is_dir():
        folder = quick_folder(cache)
    else:
        folder = benchkit.SHOES_DATA
    epochs = 1 if args.quick else max(1, args.epochs)

    import tensorflow as tf

    from tagteller import plugins
    from tagteller.datasets import FolderLayout
    from tagteller.train.model import compile_model, load_checkpoint, set_unfrozen
    from tagteller.sample_decoding import decode_samples
    from tagteller.train.pipeline import training_dataset

    domain = plugins.get_domain(benchkit.DOMAIN)
    recipe = domain.recipe
    phase = recipe.phases[args.phase]
    height, width = recipe.input_size

    def fresh_model():
        model = load_checkpoint(model_files.keras)
        set_unfrozen(model, recipe, phase.unfreeze)
        compile_model(model, phase.learning_rate, recipe.label_smoothing)
        return model

    def timed_epoch(model, data) -> float:
        start = time.perf_counter()
        model.fit(data, epochs=1, verbose=0)
        return time.perf_counter() - start

    # tagteller: decode once (threads, the engine's prepare), then tf.data for every epoch.
    dataset = FolderLayout().load(folder, domain.labels)
    index = {label: i for i, label in enumerate(dataset.labels)}
    start = time.perf_counter()
    decoded = decode_samples(dataset.samples, index, recipe.input_size, recipe.preprocessing)
    decode_s = time.perf_counter() - start
    ours_n = len(decoded)
    sides: dict[str, tuple] = {
        "ours": (fresh_model(), training_dataset(decoded, len(dataset.labels), recipe.batch_size,
                                                 recipe.augmentation, recipe.seed)),
    }
    # The ceiling for any input pipeline: the same training step on batches already in memory,
    # without augmentation (what the model alone costs on this machine).
    if not args.quick:
        plain = training_dataset(decoded, len(dataset.labels), recipe.batch_size, {}, recipe.seed).cache()
        sides["ceiling"] = (fresh_model(), plain)

    # The seeds: ImageDataGenerator reads and augments every photo again in every epoch.
    configs = {"flip only": {"horizontal_flip": bool(recipe.augmentation.get("flip"))}}
    has_scipy = importlib.util.find_spec("scipy") is not None
    if has_scipy:  # ImageDataGenerator needs scipy for rotation and zoom
        configs["flip, rotation, zoom (as the recipe)"] = {
            **configs["flip only"],
            "rotation_range": float(recipe.augmentation.get("rotation", 0) or 0) * 360,
            "zoom_range": float(recipe.augmentation.get("zoom", 0) or 0)}
    if args.quick:  # one configuration is enough to check the script works
        configs = dict(list(configs.items())[-1:])
    theirs_n = 0
    for name, augment in configs.items():
        generator = tf.keras.preprocessing.image.ImageDataGenerator(**augment)
        flow = generator.flow_from_directory(str(folder), target_size=(height, width), batch_size=recipe.batch_size,
                                             class_mode="categorical", shuffle=True, seed=recipe.seed,
                                             classes=list(dataset.labels))
        theirs_n = flow.samples
        sides[name] = (fresh_model(), flow)

    # Epochs are interleaved (epoch 1 of every side, then epoch 2, ...): this machine's speed
    # drifts by 10-20% over minutes, and interleaving gives every side the same share of it.
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(epochs):
        for name, (model, data) in sides.items():
            times[name].append(timed_epoch(model, data))
    times["ours"][0] += decode_s
    ours = times.pop("ours")
    ceiling = times.pop("ceiling", None)
    theirs = times
    fair = list(configs)[-1]  # the configuration doing the recipe's work, when scipy allows it

    def per_s(n: int, seconds: list[float]) -> float:
        return n * len(seconds) / sum(seconds)

    headers = ["epochs", "tagteller tf.data (images/s)",
               *[f"ImageDataGenerator, {name} (images/s)" for name in configs], f"ratio to {fair}",
               "ceiling: no input work (images/s)"]
    rows = []
    spans = [("epoch 1 (tracing; tagteller: + decoding once)", slice(0, 1))]
    if epochs > 1:
        spans += [(f"epochs 2-{epochs} (steady state)", slice(1, epochs)), (f"all {epochs} epochs", slice(0, epochs))]
    verdicts = {}
    for what, span in spans:
        a = per_s(ours_n, ours[span])
        others = [per_s(theirs_n, theirs[name][span]) for name in configs]
        ratio = a / others[-1]
        top = "" if ceiling is None else f"{per_s(ours_n, ceiling[span]):.1f}"
        rows.append([what, f"{a:.1f}", *[f"{b:.1f}" for b in others], f"{ratio:.2f}x", top])
        if not what.startswith("epoch 1") or epochs == 1:
            verdicts[f">= 2x ImageDataGenerator, {what}"] = ratio >= TARGET_RATIO
    notes = [f"data: {folder} ({ours_n} images read by tagteller, {theirs_n} by flow_from_directory); "
             f"model: {model_files.describe()}; phase {phase.name!r} (unfreeze={phase.unfreeze}), "
             f"batch {recipe.batch_size}, {height}x{width}",
             f"tagteller decoded the folder once in {decode_s:.2f} s (counted in its epoch 1); its augmentation: "
             f"{dict(recipe.augmentation)}",
             "ImageDataGenerator: " + "; ".join(f"{name}: {args_}" for name, args_ in configs.items())
             + ("" if has_scipy else " (scipy is not installed: no rotation or zoom, less work than the recipe's)")
             + "; it has no contrast augmentation",
             "ceiling: the same training step fed batches already decoded and in memory, without "
             "augmentation; no input pipeline can beat it, so the best possible ratio to "
             "ImageDataGenerator is ceiling / ImageDataGenerator",
             "targets: " + "; ".join(f"{k}: {'holds' if v else 'MISSED'}" for k, v in verdicts.items())]
    data = {"ours_s": ours, "theirs_s": theirs, "decode_s": decode_s, "ours_n": ours_n, "theirs_n": theirs_n,
            "verdicts": verdicts, "configs": configs, "ceiling_s": ceiling}
    benchkit.record(args, "Training input: tf.data pipeline vs ImageDataGenerator", headers, rows, notes, m, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
