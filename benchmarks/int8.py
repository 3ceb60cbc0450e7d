#!/usr/bin/env python
"""Benchmark 5, int8 against fp32: speed and top-1 on a validation set, same model.

The int8 model is the training side's static QDQ quantization
(:func:`tagteller.train.export.quantize_int8`, per-channel weights, calibrated on shoes training
photos). Figures:

- top-1 accuracy of each on the shoes validation split (the recipe's split; photos the benchmark
  model's head never saw), the change in points, and how often the two disagree;
- inference only, on pre-decoded batches: one thread, and one run per core side by side;
- end to end, ``Engine.scan`` over phone-size photos, where decoding dominates.

    .venv/bin/python benchmarks/int8.py [--model M.onnx [--int8 M-int8.onnx]] [--count 300]
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit  # noqa: E402
from limit import engine_rate, inference_rate  # noqa: E402


def validation_arrays(info):
    """Pre-decoded shoes validation photos and their label indices (None when absent)."""
    import numpy as np

    from tagteller.imaging import prepare

    split = benchkit.shoes_split(quick=False)
    if split is None:
        return None
    val = [s for s in split[1] if s.label in info.labels]
    with ThreadPoolExecutor() as pool:
        arrays = list(pool.map(lambda s: prepare(s.source, info.input_size, info.preprocessing), val))
    return np.stack(arrays), np.array([info.labels.index(s.label) for s in val])


def main() -> int:
    p = benchkit.parser(__doc__.splitlines()[0], images_option=True)
    p.add_argument("--int8", type=Path, default=None, help="the int8 model (default: quantize --model)")
    p.add_argument("--count", type=int, default=300, help="phone-size photos for the end-to-end rows")
    args = p.parse_args()
    import numpy as np

    from tagteller.engine import Engine

    m = benchkit.machine()
    cores = m["cores"]
    model = benchkit.ensure_model(args)
    int8 = benchkit.ensure_int8(args, model)
    engine = Engine(intra_threads=1)
    fp32_loaded, int8_loaded = engine.load(model.onnx), engine.load(int8)
    info = fp32_loaded.info
    if int8_loaded.info.labels != info.labels:
        raise SystemExit("error: the two models have different labels")

    val = None if args.quick else validation_arrays(info)
    if val is None:  # --quick, or no shoes dataset: a few of the benchmark photos, unlabelled
        photos = benchkit.ensure_photos(args, 12, (640, 800))
        images, truth = np.stack([fp32_loaded.prepare(ph) for ph in photos]), None
    else:
        images, truth = val

    def probabilities(loaded) -> np.ndarray:
        return np.concatenate([loaded.predict(images[i:i + 32]) for i in range(0, len(images), 32)])

    p32, p8 = probabilities(fp32_loaded), probabilities(int8_loaded)
    agree = float((p32.argmax(1) == p8.argmax(1)).mean())
    batch = images[:32] if len(images) >= 32 else np.concatenate([images] * (32 // len(images) + 1))[:32]
    total = 64 if args.quick else 2000
    photos = benchkit.ensure_photos(args, 12 if args.quick else args.count,
                                    (640, 800) if args.quick else benchkit.PHOTO_LONGEST_SIDE)
    benchkit.warm_page_cache(photos)
    rows, data = [], {}
    for name, path, probs in (("fp32", model.onnx, p32), ("int8", int8, p8)):
        acc = float((probs.argmax(1) == truth).mean()) if truth is not None else None
        one = inference_rate(path, batch, total, runners=1, intra=1)
        side = inference_rate(path, batch, total, runners=cores, intra=1)
        e2e = engine_rate(path, photos, None, None, None)
        rows.append([name, f"{path.stat().st_size / 1e6:.2f}", "n/a" if acc is None else f"{acc * 100:.1f}%",
                     f"{one:.0f}", f"{side:.0f}", f"{e2e:.1f}"])
        data[name] = {"accuracy": acc, "infer_1": one, "infer_all": side, "e2e": e2e,
                      "size_mb": path.stat().st_size / 1e6}
    change = (data["int8"]["accuracy"] - data["fp32"]["accuracy"]) * 100 if truth is not None else None
    rows.append(["int8 / fp32", f"{data['int8']['size_mb'] / data['fp32']['size_mb']:.2f}x",
                 "n/a" if change is None else f"{change:+.1f} points",
                 f"{data['int8']['infer_1'] / data['fp32']['infer_1']:.2f}x",
                 f"{data['int8']['infer_all'] / data['fp32']['infer_all']:.2f}x",
                 f"{data['int8']['e2e'] / data['fp32']['e2e']:.2f}x"])
    what = (f"shoes validation split, {len(images)} photos" if truth is not None
            else f"{len(images)} unlabelled photos (no accuracy: --quick or no shoes dataset)")
    notes = [f"top-1 on the {what}; int8 and fp32 give the same top-1 answer for {agree * 100:.1f}% of them, "
             f"mean |p_int8 - p_fp32| = {float(np.abs(p8 - p32).mean()):.4f}",
             f"inference only: pre-decoded batches of {len(batch)}; end to end: `Engine.scan` with the default "
             f"settings over {benchkit.describe_photos(photos)}",
             f"model: {model.describe()}; int8: {int8.name} (static QDQ, per-channel weights, calibrated on "
             f"shoes training photos); CPU flags: {' '.join(m['flags'])}"
             + ("" if any("vnni" in f for f in m["flags"]) else " (no VNNI: int8 dot products have no "
                                                               "dedicated instruction here)")]
    data["agreement"] = agree
    benchkit.record(args, "int8 against fp32",
                    ["model", "size (MB)", "top-1", "inference 1 thread (images/s)",
                     f"inference {cores} runs (images/s)", "end to end (images/s)"], rows, notes, m, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
