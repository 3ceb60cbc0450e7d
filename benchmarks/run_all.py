#!/usr/bin/env python
"""Run every benchmark of issue #7 in turn, each appending its section to BENCHMARKS.md.

    .venv/bin/python benchmarks/run_all.py            # the full set (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/run_all.py --quick    # tiny inputs: checks that every script works

Benchmarks that need tensorflow (cold start and folder throughput against Keras, training input,
int8 quantization of a new model) say so and are skipped when it is missing. The machine's load
average is printed before and after each one: figures taken while other work runs are noise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import benchkit  # noqa: E402

#: The commit before the engine work of issue #7: limit.py times `tagteller scan` as it was there.
BASELINE_REF = "9fd15fd"
SCRIPTS = ("cold_start.py", "folder_throughput.py", "limit.py", "training_input.py", "int8.py")
NEEDS_TF = {"training_input.py"}


def wait_for_quiet(limit_s: float, probe_s: float = 5.0) -> None:
    """Wait (up to ``limit_s``) until other processes use less than ``benchkit.BUSY_CORES`` cores
    over a ``probe_s`` window."""
    deadline = time.monotonic() + limit_s
    while True:
        snapshot = benchkit.cpu_snapshot()
        time.sleep(probe_s)
        others = benchkit.other_load(snapshot)
        if others < benchkit.BUSY_CORES:
            return
        if time.monotonic() > deadline:
            print(f"   still busy after {limit_s:.0f} s (other processes: {others:.2f} cores); running anyway",
                  flush=True)
            return
        print(f"   waiting: other processes use {others:.2f} cores", flush=True)
        time.sleep(20)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--results", type=Path, default=None, help="results file (default: BENCHMARKS.md)")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--cache", default=None)
    p.add_argument("--only", nargs="*", choices=SCRIPTS, help="run only these scripts")
    p.add_argument("--baseline-ref", default=BASELINE_REF, help="git revision limit.py compares with ('' for none)")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="before each script, wait up to this long for other processes to leave the CPU idle")
    p.add_argument("--model", type=Path, default=None, help="passed to every script (see their --help)")
    p.add_argument("--keras", type=Path, default=None, help="passed to every script with --model")
    args = p.parse_args()
    if args.model is None and not benchkit.has_tensorflow():
        raise SystemExit("error: building the benchmark model needs tensorflow; pass --model FILE.onnx")
    common = ["--results", str(args.results)] if args.results else []
    common += ["--model", str(args.model)] if args.model else []
    common += ["--keras", str(args.keras)] if args.keras else []
    common += ["--quick"] if args.quick else []
    common += ["--no-record"] if args.no_record else []
    common += ["--cache", args.cache] if args.cache else []
    have_tf = benchkit.has_tensorflow()
    failed = []
    for script in args.only or SCRIPTS:
        if script in NEEDS_TF and not have_tf:
            print(f"== {script}: skipped (needs tensorflow)", flush=True)
            continue
        extra = ["--baseline-ref", args.baseline_ref] if script == "limit.py" and args.baseline_ref else []
        if args.wait_quiet > 0:
            wait_for_quiet(args.wait_quiet)
        load = os.getloadavg()[0]
        print(f"== {script} (load average {load:.2f})", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / script), *common, *extra], env=benchkit.quiet_tf_env())
        print(f"== {script}: exit {proc.returncode} after {time.perf_counter() - start:.0f} s "
              f"(load average {os.getloadavg()[0]:.2f})", flush=True)
        if proc.returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
