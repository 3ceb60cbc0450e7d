#!/usr/bin/env python
"""Benchmark: ``--engine ray`` against the in-process engine on the same photos (issue #17).

The same 1,000 phone-size JPEGs (:func:`benchkit.ensure_photos`: real photos from ../shared,
scaled up) go through, in one process and one run:

- the in-process engine (:meth:`tagteller.engine.Engine.scan`, one worker per core: what
  ``tagteller scan`` runs), the model load included;
- then the Ray job (:mod:`tagteller.scale.job`: ``read_binary_files`` -> the actor pool -> shards
  written to a temporary folder) with 1 actor, then with one actor per core, on a local Ray
  runtime started before (its start-up is timed and shown on its own row);

in rounds (``--rounds``, default 3): other work on a shared machine only ever slows a run down, so
each pipeline keeps its best round. Actor start-up,
  the model load in each actor and the shard writing are included.

Two rates are printed for each: **job** (all images over the whole run) and **steady** (the
images received between the 10% and the 90% marks over the time between them: what a long job
converges to, start-up left out; Ray hands results over a block of 32 images at a time).
Each is also given as a ratio to the in-process engine. Target (issue #17): Ray with one actor
per core within 25% of the in-process engine (ratio >= 0.75). The answers of every Ray run are
checked against the in-process ones (same label, probabilities within 1e-6).

    .venv/bin/python benchmarks/ray_throughput.py [--count 1000] [--images DIR] [--model M.onnx]
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit  # noqa: E402

TARGET_RATIO = 0.75


class CpuMeter:
    """CPU seconds used by this process and every process below it (Ray's GCS, raylet, read
    workers and actors are all descendants of the driver that started the runtime), sampled every
    0.1 s in a thread: a process that exits between two samples loses at most its last 0.1 s.

    CPU seconds per image do not depend on what else the machine runs (wall times do: on a
    shared machine a pipeline with more processes also wins a larger share of the CPU), so
    ``cores / cpu_per_image`` is the rate each pipeline would reach alone on those cores."""

    def __init__(self) -> None:
        import threading

        import psutil

        self.root = psutil.Process()
        self.seen: dict[tuple[int, float], float] = {}
        self.timeline: list[tuple[float, float]] = []  # (time, CPU seconds so far)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        import psutil

        for proc in [self.root, *self.root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                key = (proc.pid, proc.create_time())
            except psutil.Error:  # exited meanwhile: its last sample stands
                continue
            self.seen[key] = max(self.seen.get(key, 0.0), times.user + times.system)
        self.timeline.append((time.perf_counter(), sum(self.seen.values())))

    def _loop(self) -> None:
        while not self.stop_event.wait(0.1):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._sample()
        self.start = dict(self.seen)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()
        self._sample()
        self.seconds = sum(v - self.start.get(k, 0.0) for k, v in self.seen.items())

    def between(self, t0: float, t1: float) -> float:
        """CPU seconds used between two moments (to the sampling's 0.1 s)."""
        def at(t: float) -> float:
            return max((c for when, c in self.timeline if when <= t), default=self.timeline[0][1])
        return at(t1) - at(t0)


def timed_in_process(model_path: Path, photos: list[Path]) -> tuple[dict, dict[str, dict]]:
    """Load + scan in this process; the rates and the records by file."""
    from tagteller.engine import Engine
    from tagteller.output import result_record

    names = [str(p) for p in photos]
    with CpuMeter() as cpu:
        start = time.perf_counter()
        engine = Engine()
        try:
            loaded = engine.load(model_path)
            records, arrivals = {}, []
            for result in engine.scan(loaded, names, names=names):
                records[result.source] = result_record(result, 0.0)
                arrivals.append((time.perf_counter(), len(records)))
            end = time.perf_counter()
        finally:
            engine.close()
    return rates(start, end, arrivals, cpu), records


def rates(start: float, end: float, arrivals: list[tuple[float, int]], cpu: CpuMeter) -> dict:
    """``arrivals``: (time, images received so far) after each result. job: all images over the
    whole run; steady: the images received between the 10% and 90% marks over the time between
    them (start-up and the last stragglers left out); the CPU seconds per image overall and
    between the same marks (``steady_cpu_ms``)."""
    count = arrivals[-1][1] if arrivals else 0
    low = next((t, n) for t, n in arrivals if n >= 0.1 * count)
    high = next((t, n) for t, n in arrivals if n >= 0.9 * count)
    steady = (high[1] - low[1]) / (high[0] - low[0]) if high[0] > low[0] else 0.0
    steady_cpu = cpu.between(low[0], high[0]) / (high[1] - low[1]) if high[1] > low[1] else float("nan")
    return {"images": count, "seconds": end - start, "job": count / (end - start), "steady": steady,
            "first_result_s": arrivals[0][0] - start if arrivals else 0.0, "cpu_s": cpu.seconds,
            "steady_cpu_ms": 1000 * steady_cpu}


def timed_ray(model_path: Path, photos: list[Path], actors: int) -> tuple[dict, dict[str, dict]]:
    """The Ray job with ``actors`` actors (Ray already up); the rates and the records by file."""
    from tagteller.engine import read_model_info
    from tagteller.scale.job import ScanPlan, prepare
    from tagteller.scale.shards import list_shards, output_filesystem, read_shard

    info = read_model_info(model_path)
    with tempfile.TemporaryDirectory(prefix="tagteller-bench-ray-") as out:
        plan = ScanPlan(sources=[str(p) for p in photos], output=out, model_path=model_path, domain=info.domain,
                        model_version=info.model_version, low_confidence=0.0, actors=actors)
        with CpuMeter() as cpu:  # the runtime's idle processes (GCS, raylet) are counted too
            start = time.perf_counter()
            job = prepare(plan)
            arrivals, received = [], 0
            for table in job.results():
                received += table.num_rows
                arrivals.append((time.perf_counter(), received))
            end = time.perf_counter()
        fs, folder = output_filesystem(out)
        records = {r["file"]: r for path in list_shards(fs, folder) for r in read_shard(fs, path).to_pylist()}
    return rates(start, end, arrivals, cpu), records


def compare(ours: dict[str, dict], reference: dict[str, dict]) -> str:
    """'' when every record matches the in-process one (label, probabilities within 1e-6)."""
    if set(ours) != set(reference):
        return f"{len(set(reference) - set(ours))} files missing, {len(set(ours) - set(reference))} extra"
    for name, want in reference.items():
        got = ours[name]
        if got["label"] != want["label"] or got["status"] != want["status"]:
            return f"{name}: {got['label']} / {got['status']} instead of {want['label']} / {want['status']}"
        worst = max((abs(a["probability"] - b["probability"]) for a, b in zip(got["top"], want["top"])), default=0)
        if worst > 1e-6:
            return f"{name}: probabilities differ by {worst:.2e}"
    return ""


def main() -> int:
    p = benchkit.parser(__doc__.splitlines()[0], model_options=False, images_option=True)
    p.add_argument("--count", type=int, default=1000, help="photos in the set (default 1000)")
    p.add_argument("--model", type=Path, default=None,
                   help="the model (default: the shipped shoes model, models/shoes.onnx)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the three runs; each keeps its best (default 3)")
    p.add_argument("--address", default=None, help="use this Ray cluster instead of starting a local runtime")
    args = p.parse_args()
    missing = [m for m in ("ray", "pyarrow", "fsspec") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"error: this benchmark needs the [ray] extra ({', '.join(missing)} missing): "
                         "pip install 'tagteller[ray]'")
    import ray

    from tagteller.engine import available_cores
    from tagteller.scale.job import _quiet_ray_data

    count = 24 if args.quick else args.count
    m = benchkit.machine()
    model_path = args.model or benchkit.REPO / "models" / "shoes.onnx"
    photos = benchkit.ensure_photos(args, count, (640, 800) if args.quick else benchkit.PHOTO_LONGEST_SIDE)
    benchkit.warm_page_cache(photos)
    cores = available_cores()

    def start_ray() -> float:
        start = time.perf_counter()
        if args.address:
            ray.init(address=args.address, logging_level=logging.ERROR, log_to_driver=False)
        else:
            ray.init(num_cpus=cores, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        _quiet_ray_data()
        return time.perf_counter() - start

    # Rounds of: in-process, then Ray with 1 actor and with one per core (a runtime per round).
    # Other work on the machine only ever slows a run down, so each side keeps its best round.
    inproc_runs, ray_runs, starts, mismatches = [], {}, [], {}
    reference: dict[str, dict] = {}
    for _round in range(1 if args.quick else args.rounds):
        result, reference = timed_in_process(model_path, photos)
        inproc_runs.append(result)
        starts.append(start_ray())
        try:
            for actors in sorted({1, cores}):
                result, records = timed_ray(model_path, photos, actors)
                ray_runs.setdefault(actors, []).append(result)
                mismatches[actors] = mismatches.get(actors) or compare(records, reference)
        finally:
            ray.shutdown()

    def best(runs: list[dict]) -> dict:
        return max(runs, key=lambda r: r["steady"]) | {"job": max(r["job"] for r in runs),
                                                         "seconds": min(r["seconds"] for r in runs),
                                                         "cpu_s": min(r["cpu_s"] for r in runs),
                                                         "steady_cpu_ms": min(r["steady_cpu_ms"] for r in runs)}

    inproc = best(inproc_runs)
    runs = {actors: best(r) for actors, r in ray_runs.items()}
    ray_start = min(starts)
    for r in (inproc, *runs.values()):  # the rate the CPU cost allows on these cores, alone
        r["cpu_ms_per_image"] = 1000 * r["cpu_s"] / r["images"]
        r["cpu_bound"] = cores * r["images"] / r["cpu_s"]
        # (nan when the steady span was shorter than the sampling: --quick)
        r["steady_cpu_bound"] = 1000 * cores / r["steady_cpu_ms"] if r["steady_cpu_ms"] > 0 else float("nan")
    base = {k: inproc[k] for k in ("job", "steady", "cpu_bound", "steady_cpu_bound")}

    def row(label: str, r: dict) -> list:
        return [label, r["images"], f"{r['seconds']:.2f}", f"{r['first_result_s']:.2f}", f"{r['job']:.1f}",
                f"{r['job'] / base['job']:.2f}", f"{r['steady']:.1f}", f"{r['steady'] / base['steady']:.2f}",
                f"{r['cpu_ms_per_image']:.1f}", f"{r['cpu_bound']:.1f}", f"{r['cpu_bound'] / base['cpu_bound']:.2f}",
                f"{r['steady_cpu_ms']:.1f}", f"{r['steady_cpu_bound']:.1f}",
                f"{r['steady_cpu_bound'] / base['steady_cpu_bound']:.2f}"]

    rows = [row(f"in-process Engine.scan ({cores} workers)", inproc)]
    rows += [row(f"Ray Data, {a} actor{'s' if a > 1 else ''}", r) for a, r in runs.items()]
    rows.append(["Ray runtime start-up (ray.init, once per job)", "", f"{ray_start:.2f}", *[""] * 11])
    full = runs[max(runs)]
    verdicts = {f"Ray with {max(runs)} actors within 25% of in-process (steady CPU cost: the {cores}-core rate "
                "alone, start-up left out)": full["steady_cpu_bound"] / base["steady_cpu_bound"] >= TARGET_RATIO,
                f"Ray with {max(runs)} actors within 25% of in-process (CPU cost: the {cores}-core rate alone)":
                full["cpu_bound"] / base["cpu_bound"] >= TARGET_RATIO,
                f"Ray with {max(runs)} actors within 25% of in-process (steady)": full["steady"] / base["steady"]
                >= TARGET_RATIO,
                f"Ray with {max(runs)} actors within 25% of in-process (job, start-up included)":
                full["job"] / base["job"] >= TARGET_RATIO,
                "same answers as in-process": not any(mismatches.values())}
    notes = [f"photos: {benchkit.describe_photos(photos)}; model: {model_path.name}",
             "job: all images / whole run (Ray: actor start-up, model load in each actor and shard writing "
             "included; in-process: model load included); steady: images between the 10% and 90% marks / the "
             f"time between them; ratios: to in-process; each row: the best of {len(inproc_runs)} rounds "
             "(in-process, Ray 1 actor, Ray per core, in turn)",
             "CPU ms/image: CPU seconds of every process of the pipeline (Ray: driver, GCS, raylet, readers, "
             "actors) per image, start-up included; CPU-bound images/s: cores / that, the rate it reaches alone "
             "on these cores (wall-clock rates on a shared machine also measure how much CPU each side won "
             "from the other work)",
             "steady CPU: the same between the 10% and 90% marks (start-up left out: what a long job pays)",
             f"per-actor throughput here: steady {runs[1]['steady']:.1f} images/s with 1 actor; steady CPU-bound "
             f"{full['steady_cpu_bound'] / cores:.1f} images/s per core ({max(runs)} actors)",
             "answers: " + "; ".join(f"{a} actor(s): {v or 'every record matches the in-process engine'}"
                                     for a, v in mismatches.items()),
             "targets: " + "; ".join(f"{k}: {'holds' if v else 'MISSED'}" for k, v in verdicts.items())]
    data = {"in_process": inproc_runs, "ray": ray_runs, "ray_start_s": starts,
            "cores": cores, "verdicts": verdicts, "mismatches": mismatches}
    benchkit.record(args, "Ray Data against the in-process engine",
                    ["pipeline", "images", "seconds", "first result (s)", "job images/s", "job ratio",
                     "steady images/s", "steady ratio", "CPU ms/image", f"CPU-bound images/s on {cores} cores",
                     "CPU-bound ratio", "steady CPU ms/image", "steady CPU-bound images/s", "steady CPU-bound ratio"],
                    rows, notes, m, data)
    return 0 if not any(mismatches.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
