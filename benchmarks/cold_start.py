#!/usr/bin/env python
"""Benchmark 1, cold start: ``tagteller scan --domain shoes one.jpg`` as a whole process against the
seed-style script (``import tensorflow``, load the Keras model, ``load_img``, ``predict``) on the
same model and the same phone-size photo.

Each run is a fresh process; the two alternate, after one unmeasured warm-up run of each (so both
find the files in the page cache), and the median of ``--repeats`` runs is reported, with the
peak RSS of each process (``os.wait4``). Targets (issue #7): >= 10x faster than the seed-style
script, under 0.5 s, peak RSS under 250 MB. A second table lists where ``tagteller scan``'s own
time goes at import (``python -X importtime``), the part of a cold start that is not the engine.

    .venv/bin/python benchmarks/cold_start.py [--repeats 7] [--model M.onnx --keras M.keras]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit  # noqa: E402

TARGET_RATIO = 10.0
TARGET_WALL_S = 0.5
TARGET_RSS_MB = 250.0


def import_breakdown(cmd: list[str], env: dict[str, str], top: int = 8) -> list[tuple[str, float]]:
    """The top-level imports of one run of ``cmd`` (a console script) by cumulative time (ms)."""
    script = Path(cmd[0])
    if not script.is_file() or len(cmd) < 2:
        return []
    # The console script is a tiny Python file; run its entry point under -X importtime.
    runner = [sys.executable, "-X", "importtime", "-c",
              "import sys; from tagteller.cli import main; sys.argv[0] = 'tagteller'; main()", *cmd[1:]]
    run = benchkit.run_process(runner, env=env)
    rows: list[tuple[str, float]] = []
    for line in run.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) == 1:  # top level: imported by the program itself
            rows.append((m.group(4), int(m.group(2)) / 1000))
    rows.sort(key=lambda r: -r[1])
    return rows[:top]


def main() -> int:
    p = benchkit.parser(__doc__.splitlines()[0], images_option=True)
    p.add_argument("--repeats", type=int, default=7, help="measured runs of each side (median reported)")
    args = p.parse_args()
    repeats = 1 if args.quick else max(1, args.repeats)
    have_tf = benchkit.has_tensorflow()
    m = benchkit.machine()
    model = benchkit.ensure_model(args, need_keras=have_tf)
    photo = benchkit.ensure_photos(args, 1, (640, 800) if args.quick else benchkit.PHOTO_LONGEST_SIDE)[0]
    cache = benchkit.cache_root(args.cache)
    target, env = benchkit.scan_target(model.onnx, cache)
    tagteller = [*benchkit.tagteller_command(), "scan", *target, str(photo)]
    seed = [sys.executable, str(benchkit.BENCH_DIR / "seed_style.py"), "one", str(model.keras), str(photo)]
    seed_env = benchkit.quiet_tf_env(env)

    sides = {"tagteller scan": (tagteller, env)}
    if have_tf and model.keras is not None:
        sides["seed-style (TF + Keras predict)"] = (seed, seed_env)
    benchkit.warm_page_cache([photo, model.onnx] + ([model.keras] if model.keras else []))
    runs: dict[str, list[benchkit.ProcessRun]] = {name: [] for name in sides}
    if not args.quick:
        for name, (cmd, e) in sides.items():
            benchkit.run_process(cmd, env=e).check(f"warm-up of {name}")
    for _ in range(repeats):
        for name, (cmd, e) in sides.items():
            runs[name].append(benchkit.run_process(cmd, env=e).check(name))

    walls = {name: [r.wall_s for r in rs] for name, rs in runs.items()}
    rss = {name: [r.peak_rss_mb for r in rs] for name, rs in runs.items()}
    median_wall = {name: benchkit.repeats(f"{name}: wall", w).median() for name, w in walls.items()}
    median_rss = {name: benchkit.repeats(f"{name}: peak RSS (MB)", r, unit="integer").median()
                  for name, r in rss.items()}
    ours = "tagteller scan"
    rows = []
    for name in sides:
        rows.append([name, f"{median_wall[name]:.3f}", f"{min(walls[name]):.3f}",
                     f"{median_rss[name]:.0f}", len(walls[name])])
    notes = [f"photo: {benchkit.describe_photos([photo])}; model: {model.describe()}",
             "wall: spawn to exit of the whole process; peak RSS: ru_maxrss of the process (os.wait4); "
             "each side had one unmeasured warm-up run" + (" (skipped: --quick)" if args.quick else "")]
    verdicts = {}
    ours_wall = median_wall[ours]
    ours_rss = median_rss[ours]
    verdicts["scan under 0.5 s"] = ours_wall < TARGET_WALL_S
    verdicts["scan peak RSS under 250 MB"] = ours_rss < TARGET_RSS_MB
    seed_name = "seed-style (TF + Keras predict)"
    if seed_name in walls:
        ratio = median_wall[seed_name] / ours_wall
        rss_ratio = median_rss[seed_name] / ours_rss
        rows.append(["ratio seed-style / tagteller", f"{ratio:.1f}x", "", f"{rss_ratio:.1f}x", ""])
        verdicts[">= 10x faster than seed-style"] = ratio >= TARGET_RATIO
    else:
        notes.append("seed-style side skipped: tensorflow is not installed")
    notes.append("targets: " + "; ".join(f"{k}: {'holds' if v else 'MISSED'}" for k, v in verdicts.items()))
    breakdown = [] if args.quick else import_breakdown(tagteller, env)
    if breakdown:
        notes.append("`tagteller scan` imports by cumulative time (python -X importtime, one run): "
                     + ", ".join(f"{name} {ms:.0f} ms" for name, ms in breakdown))
    data = {"walls": walls, "rss_mb": rss, "verdicts": verdicts, "imports_ms": breakdown}
    benchkit.record(args, "Cold start: one photo, whole process",
                    ["command", "median wall (s)", "best wall (s)", "median peak RSS (MB)", "runs"],
                    rows, notes, m, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
