#!/usr/bin/env python
"""Benchmark 3, the machine's limit: decode-only and inference-only throughput on this machine,
the bound they imply, and the engine's end-to-end throughput as a fraction of it.

- decode-only: :func:`tagteller.imaging.prepare` (the engine's own decode step) over the photo
  set, on one thread (D1) and on a thread pool of one thread per core (D);
- inference-only: the model on pre-decoded batches, one onnxruntime thread (I1), and with every
  core (I: one run per core side by side, as the engine does, or one run with an intra-op thread
  per core, whichever is faster);
- the bound for C cores: each image needs 1/D1 core-seconds to decode and 1/I1 to classify, and C
  cores have C core-seconds per second, so no pipeline can beat ``C / (1/D1 + 1/I1)`` images/s;
- end-to-end: ``tagteller scan --format jsonl DIR`` as a whole process over the same photos (the
  figure the target is checked on), and ``Engine.scan`` inside this process;
- the tuning sweep: ``Engine.scan`` with other worker counts, intra-op threads and batch sizes
  (how the defaults were chosen), the JPEG draft size (speed, and how often the model's answer
  changes against a full-quality decode), and with ``--baseline-ref REV`` the engine as it was at
  a git revision (``git archive``): the whole ``tagteller scan`` process with that revision's
  ``tagteller/``, and its ``Engine`` class beside this one on the same imaging code (a long list,
  a short one, and pre-decoded arrays where only inference is left), alternating.

Target (issue #7): end-to-end >= 80% of the bound for 2 cores.

    .venv/bin/python benchmarks/limit.py [--count 1000] [--images DIR] [--model M.onnx] [--baseline-ref REV]
"""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit  # noqa: E402

TARGET_FRACTION = 0.8
#: Engine settings tried in the sweep: (workers, intra-op threads, batch size); None = default.
SWEEP = ((None, None, None), (1, 1, 16), (3, 1, 16), (4, 1, 16), (2, 2, 16), (1, 2, 16),
         (2, 1, 4), (2, 1, 8), (2, 1, 32), (2, 1, 64))


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def decode_rate(photos: list[Path], info, threads: int) -> float:
    from tagteller.imaging import prepare

    start = time.perf_counter()
    if threads == 1:
        for p in photos:
            prepare(p, info.input_size, info.preprocessing)
    else:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(lambda p: prepare(p, info.input_size, info.preprocessing), photos):
                pass
    return rate(len(photos), time.perf_counter() - start)


def inference_rate(model_path: Path, batch, total: int, runners: int, intra: int) -> float:
    """Images/s for ``total`` images as batches of ``batch`` run by ``runners`` threads."""
    from tagteller.engine import Engine

    loaded = Engine(intra_threads=intra, decode_workers=1).load(model_path)
    loaded.predict(batch)  # first run allocates
    rounds = max(1, total // len(batch))
    share = [rounds // runners + (1 if i < rounds % runners else 0) for i in range(runners)]

    def work(n: int) -> None:
        for _ in range(n):
            loaded.predict(batch)

    start = time.perf_counter()
    with ThreadPoolExecutor(runners) as pool:
        list(pool.map(work, share))
    return rate(rounds * len(batch), time.perf_counter() - start)


def engine_rate(model_path: Path, photos: list, workers, intra, batch, engine_class=None) -> float:
    """Images/s of ``Engine.scan`` over ``photos`` (paths, or arrays: then only inference is left)."""
    from tagteller.engine import Engine

    engine = (engine_class or Engine)(intra_threads=intra, decode_workers=workers)
    try:
        loaded = engine.load(model_path)
        list(engine.scan(loaded, photos[:4], batch_size=batch or 16))  # pool threads, first runs
        start = time.perf_counter()
        results = list(engine.scan(loaded, photos, batch_size=batch or 16))
        seconds = time.perf_counter() - start
    finally:
        engine.close()
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"error: {failed[0].source}: {failed[0].error}")
    return rate(len(results), seconds)


def scan_process(cmd_prefix: list[str], target: list[str], folder: Path, env: dict[str, str],
                 expected: int) -> benchkit.ProcessRun:
    run = benchkit.run_process([*cmd_prefix, "scan", *target, "--format", "jsonl", "--no-progress", str(folder)],
                               env=env).check("tagteller scan")
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    if len(lines) != expected or any(json.loads(line)["status"] != "ok" for line in lines):
        raise SystemExit(f"error: tagteller scan gave {len(lines)} results (not all ok?) for {expected} photos")
    return run


def baseline_tree(ref: str, cache: Path) -> Path | None:
    """``tagteller/`` as it was at git revision ``ref``, unpacked under the cache (or None)."""
    target = cache / f"baseline-{ref}"
    if (target / "tagteller" / "__init__.py").is_file():
        return target
    proc = subprocess.run(["git", "-C", str(benchkit.REPO), "archive", ref, "tagteller"], capture_output=True)
    if proc.returncode != 0:
        print(f"warning: cannot read tagteller/ at {ref}: {proc.stderr.decode(errors='replace').strip()}")
        return None
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target


def engine_class_at(tree: Path):
    """The ``Engine`` class of the ``tagteller/engine.py`` in ``tree``, imported under a name of its
    own; it uses this tree's other modules (imaging, modelfile), so a comparison isolates the
    engine's scheduling."""
    spec = importlib.util.spec_from_file_location("tagteller_engine_at_baseline", tree / "tagteller" / "engine.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.Engine


def baseline_rows(tree: Path, model_path: Path, photos: list[Path], target: list[str], folder: Path,
                  env: dict[str, str], rounds: int) -> tuple[list[list], dict]:
    """The engine in ``tree`` against this one, alternating, ``rounds`` times each (medians)."""
    from tagteller.engine import Engine

    old_engine = engine_class_at(tree)
    runner = [sys.executable, "-c", "import sys; from tagteller.cli import main; sys.argv[0] = 'tagteller'; main()"]
    old_env = dict(env, PYTHONPATH=str(tree))
    loaded = Engine(intra_threads=1).load(model_path)
    arrays = [loaded.prepare(p) for p in photos[:32]] * 63  # 2016 pre-decoded images: inference only
    cases = [
        (f"`tagteller scan`, whole process, {len(photos)} photos",
         lambda old: rate(len(photos), scan_process(runner, target, folder, old_env if old else env,
                                                    len(photos)).wall_s)),
        (f"`Engine.scan`, {min(300, len(photos))} photos",
         lambda old: engine_rate(model_path, photos[:300], None, None, None, old_engine if old else None)),
        (f"`Engine.scan`, a short list: {len(photos[:24])} photos",
         lambda old: engine_rate(model_path, photos[:24], None, None, None, old_engine if old else None)),
        (f"`Engine.scan`, {len(arrays)} pre-decoded arrays (inference only)",
         lambda old: engine_rate(model_path, arrays, None, None, None, old_engine if old else None)),
    ]
    rows, figures = [], {}
    for label, measure in cases:
        old_rates, new_rates = [], []
        for _ in range(rounds):
            old_rates.append(measure(True))
            new_rates.append(measure(False))
        old_r = benchkit.repeats(f"{label}: before", old_rates, unit="integer").median()
        new_r = benchkit.repeats(f"{label}: after", new_rates, unit="integer").median()
        rows.append([label, f"{old_r:.1f}", f"{new_r:.1f}", f"{new_r / old_r:.2f}x"])
        figures[label] = {"before": old_rates, "after": new_rates}
    return rows, figures


def draft_check(model_path: Path, photos: list[Path]) -> list[list]:
    """Decode speed and answers for each draft size against a full decode with a LANCZOS resize."""
    import numpy as np
    from PIL import Image

    from tagteller import imaging
    from tagteller.engine import Engine
    from tagteller.imaging import open_image

    loaded = Engine(intra_threads=1, decode_workers=1).load(model_path)
    info = loaded.info

    def reference(p: Path):
        with open_image(p) as im:
            im = im.convert(info.color_mode).resize((info.width, info.height), Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.float32)
        return arr if arr.ndim == 3 else arr[:, :, None]

    def classify(arrays) -> np.ndarray:
        return np.concatenate([loaded.predict(np.stack(arrays[i:i + 32])) for i in range(0, len(arrays), 32)])

    ref_top = classify([reference(p) for p in photos]).argmax(axis=1)
    rows = []
    saved = imaging.DRAFT_OVERSAMPLE
    try:
        for oversample in (1, 2, 4):
            imaging.DRAFT_OVERSAMPLE = oversample
            start = time.perf_counter()
            arrays = [imaging.prepare(p, info.input_size, info.preprocessing) for p in photos]
            speed = rate(len(photos), time.perf_counter() - start)
            top = classify(arrays).argmax(axis=1)
            changed = float((top != ref_top).mean())
            rows.append([f"{oversample}x the input{' (default)' if oversample == saved else ''}", f"{speed:.1f}",
                         f"{changed * 100:.1f}%"])
    finally:
        imaging.DRAFT_OVERSAMPLE = saved
    return rows


def main() -> int:
    p = benchkit.parser(__doc__.splitlines()[0], images_option=True)
    p.add_argument("--count", type=int, default=1000, help="photos in the set (default 1000)")
    p.add_argument("--sweep-count", type=int, default=300, help="photos per configuration in the sweep")
    p.add_argument("--no-sweep", action="store_true", help="skip the tuning sweep and the draft check")
    p.add_argument("--baseline-ref", default=None,
                   help="also time `tagteller scan` with tagteller/ as it was at this git revision")
    args = p.parse_args()
    count = 12 if args.quick else args.count
    m = benchkit.machine()
    cores = m["cores"]
    model = benchkit.ensure_model(args)
    photos = benchkit.ensure_photos(args, count, (640, 800) if args.quick else benchkit.PHOTO_LONGEST_SIDE)
    folder = photos[0].parent if args.images is None else Path(args.images)
    cache = benchkit.cache_root(args.cache)
    from tagteller.engine import Engine

    info = Engine(intra_threads=1).load(model.onnx).info
    target, env = benchkit.scan_target(model.onnx, cache)

    import numpy as np

    from tagteller.imaging import prepare

    benchkit.warm_page_cache(photos)  # the first measurement must not pay for the disk
    decode_rate(photos[:4], info, 1)  # Pillow's plugins load
    d1 = decode_rate(photos, info, 1)
    d_all = decode_rate(photos, info, cores)
    batch = np.stack([prepare(ph, info.input_size, info.preprocessing) for ph in photos[:16]] * 2)[:32]
    infer_total = 64 if args.quick else 2000
    i1 = inference_rate(model.onnx, batch, infer_total, runners=1, intra=1)
    i_side = inference_rate(model.onnx, batch, infer_total, runners=cores, intra=1)
    i_intra = inference_rate(model.onnx, batch, infer_total, runners=1, intra=cores)
    bound = cores / (1 / d1 + 1 / i1)
    bound2 = 2 / (1 / d1 + 1 / i1)

    scan = scan_process(benchkit.tagteller_command(), target, folder, env, len(photos))
    e2e = rate(len(photos), scan.wall_s)
    in_process = engine_rate(model.onnx, photos, None, None, None)

    rows = [
        ["decode only, 1 thread (D1)", f"{d1:.1f}", ""],
        [f"decode only, {cores} threads", f"{d_all:.1f}", f"{d_all / d1:.2f}x D1"],
        ["inference only, 1 thread (I1)", f"{i1:.1f}", f"batch {len(batch)}"],
        [f"inference only, {cores} runs side by side", f"{i_side:.1f}", f"{i_side / i1:.2f}x I1"],
        [f"inference only, 1 run with {cores} intra-op threads", f"{i_intra:.1f}", f"{i_intra / i1:.2f}x I1"],
        [f"**bound for {cores} cores** = {cores} / (1/D1 + 1/I1)", f"{bound:.1f}", ""],
        ["`tagteller scan` end to end (whole process)", f"{e2e:.1f}", f"**{e2e / bound * 100:.0f}% of the bound**"],
        ["`Engine.scan` end to end (in this process)", f"{in_process:.1f}", f"{in_process / bound * 100:.0f}% of the bound"],
    ]
    data = {"cores": cores, "D1": d1, "D": d_all, "I1": i1, "I_side": i_side, "I_intra": i_intra,
            "bound": bound, "bound_2_cores": bound2, "scan_e2e": e2e, "scan_wall_s": scan.wall_s,
            "scan_rss_mb": scan.peak_rss_mb, "engine_e2e": in_process}
    notes = [f"photos: {benchkit.describe_photos(photos)}; model: {model.describe()}",
             f"the bound: each image takes 1/D1 s of one core to decode and 1/I1 s to classify; {cores} "
             f"cores give {cores} core-seconds per second, so B = {cores} / (1/D1 + 1/I1) images/s "
             f"(for 2 cores: {bound2:.1f})",
             f"`tagteller scan {target[0]} ... --format jsonl --no-progress DIR`: {scan.wall_s:.2f} s for "
             f"{len(photos)} photos, start-up and output included; peak RSS {scan.peak_rss_mb:.0f} MB"]
    verdict = e2e / bound >= TARGET_FRACTION
    notes.append(f"target: end to end >= 80% of the bound for {cores} cores: {'holds' if verdict else 'MISSED'}"
                 + ("" if cores == 2 else f" (this machine has {cores} cores, not 2)"))
    data["verdict"] = verdict

    more = []
    if not args.no_sweep:
        subset = photos[: (len(photos) if args.quick else args.sweep_count)]
        sweep_rows = []
        defaults = Engine()
        for workers, intra, batch_size in SWEEP:
            r = engine_rate(model.onnx, subset, workers, intra, batch_size)
            label = (f"{workers or defaults.decode_workers} workers, {intra or defaults.intra_threads} intra-op, "
                     f"batch {batch_size or 16}" + (" (default)" if workers is None else ""))
            sweep_rows.append([label, f"{r:.1f}", f"{r / bound * 100:.0f}%"])
            data.setdefault("sweep", {})[label] = r
        more.append((f"Tuning sweep: `Engine.scan` on {len(subset)} photos per setting",
                     ["setting", "images/s", "of the bound"], sweep_rows))
        if args.baseline_ref:
            tree = baseline_tree(args.baseline_ref, cache)
            if tree is not None:
                base_rows, base_figures = baseline_rows(tree, model.onnx, photos, target, folder, env,
                                                        1 if args.quick else 3)
                data["baseline"] = base_figures
                more.append((f"Before and after: the engine at {args.baseline_ref} (its defaults) against this one, "
                             f"alternating, median of {1 if args.quick else 3} runs each (images/s)",
                             ["workload", f"at {args.baseline_ref}", "this tree", "ratio"], base_rows))
        draft_photos = photos[: (len(photos) if args.quick else 200)]
        more.append((f"JPEG draft size: decode speed (1 thread) and the model's top-1 answers against a "
                     f"full decode + LANCZOS resize, {len(draft_photos)} photos",
                     ["draft request", "decode images/s", "top-1 changed"], draft_check(model.onnx, draft_photos)))
    benchkit.record(args, f"The limit: decode, inference, and the {cores}-core bound",
                    ["measure", "images/s", "note"], rows, notes, m, data, more_tables=more)
    return 0


if __name__ == "__main__":
    sys.exit(main())
