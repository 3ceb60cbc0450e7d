#!/usr/bin/env python
"""Shared helpers for the benchmark scripts in this folder (issue #7).

Owns what every benchmark needs and nothing a single benchmark measures:

- the **benchmark model**: the ``shoes`` recipe (its backbone at its input size: EfficientNet-Lite0
  at 224 px since session 3, MobileNet v1 alpha 0.25 before) built with the training side's
  :func:`~tagteller.train.model.build_classifier` from the recipe's ImageNet weights (random
  weights when they are not installed, or with ``--quick``), its head fitted for a few epochs on the
  shoes training split when that dataset is present, saved as ``.keras`` (the seed-style side) and
  exported with the training side's ONNX export and metadata (tagteller's side), plus a static QDQ
  int8 copy. It is built once per cache folder, in a child process (only that child imports
  tensorflow): ``python benchmarks/benchkit.py build-model --out DIR``;
- the **photo set**: real photos from the shared datasets, scaled up to phone-photo sizes (longest
  side 1600-2400 px, JPEG quality 90, light sensor-like grain) into a cache folder outside the
  repository; synthetic photos when the shared datasets are absent;
- running a **child process** and reading its wall time and peak RSS (``os.wait4``'s
  ``ru_maxrss``: the peak of the process, or of its largest waited-for descendant), through a
  small launcher so that the benchmark script's own memory is not counted;
- the **machine** description (cores, CPU model, vector flags, load) and appending a dated
  section with the command and the table to ``BENCHMARKS.md``;
- **timing statistics** over repeated measurements (:func:`repeats`).

pyperf (the ``[dev]`` extra) provides the machine metadata (CPU model, frequency and
configuration, platform, ASLR, Python build: what ``python -m pyperf metadata`` prints) and the
statistics over repeated values (:func:`repeats` returns a ``pyperf.Benchmark``: median, mean,
standard deviation). Its ``Runner`` is not used: it times a Python function or statement in
worker processes that re-run the benchmark script with its own command line, calibrating loops
per value. What these scripts measure does not have that shape: a whole ``tagteller`` process
from spawn to exit with its peak RSS (through the launcher below, so that the parent's memory is
not charged), throughput over a folder of photos as one long run, and both sides of a comparison
interleaved run by run on the same machine state; ``--quick`` needs exactly one run.

The cache folder is ``$TAGTELLER_BENCH_CACHE``, else ``<tmp>/tagteller-bench``; ``--cache``
overrides both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "benchmarks"
DEFAULT_RESULTS = REPO / "BENCHMARKS.md"
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
PHOTO_SOURCES = tuple(SHARED_DATASETS / name for name in ("products", "shoes", "clothing-tags"))
SHOES_DATA = SHARED_DATASETS / "shoes"
DOMAIN = "shoes"
#: Phone-photo sizes the photo set is scaled to (longest side, pixels) and its JPEG quality.
PHOTO_LONGEST_SIDE = (1600, 2400)
PHOTO_QUALITY = 90
#: Standard deviation of the grain added to scaled-up photos (pixel levels): a scaled-up 240 px
#: product shot is smoother than a real photo, and JPEG decoding cost grows with detail.
PHOTO_GRAIN = 4.0
#: Epochs the benchmark model's head is fitted for (on the shoes training split, backbone frozen).
HEAD_EPOCHS = 6
#: Other processes using this many cores on average during a run make its figures noise.
BUSY_CORES = 0.15
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
                "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")


# -- arguments, cache -------------------------------------------------------------------------

def cache_root(value: str | os.PathLike[str] | None = None) -> Path:
    """Where models and photos are cached (never inside the repository)."""
    if value:
        path = Path(value)
    elif os.environ.get("TAGTELLER_BENCH_CACHE"):
        path = Path(os.environ["TAGTELLER_BENCH_CACHE"])
    else:
        path = Path(tempfile.gettempdir()) / "tagteller-bench"
    path = path.expanduser().resolve()
    if path == REPO or REPO in path.parents:
        raise SystemExit(f"error: the benchmark cache {path} must be outside the repository")
    path.mkdir(parents=True, exist_ok=True)
    return path


def parser(description: str, *, model_options: bool = True, images_option: bool = False) -> argparse.ArgumentParser:
    """The options every benchmark script shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="tiny inputs and one repeat: checks the script works (the smoke test uses it)")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help="markdown file the dated section is appended to (default: BENCHMARKS.md)")
    p.add_argument("--no-record", action="store_true", help="print the table only, append nothing")
    p.add_argument("--cache", default=None, help="cache folder for models and photos (outside the repo)")
    if model_options:
        p.add_argument("--model", type=Path, default=None,
                       help="tagteller's side: this .onnx model (default: build the shoes benchmark model)")
        p.add_argument("--keras", type=Path, default=None,
                       help="the seed-style side: the same model as .keras (required with --model)")
    if images_option:
        p.add_argument("--images", type=Path, default=None,
                       help="use the photos in this folder instead of the generated phone-size set")
    return p


def command_line() -> str:
    """How this script was run, relative to the repository root, for the results file."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPO))
    except ValueError:
        shown = str(script)
    python = Path(sys.executable)
    try:
        python_shown = str(python.relative_to(REPO))
    except ValueError:
        python_shown = str(python)
    return " ".join(shlex.quote(a) for a in [python_shown, shown, *sys.argv[1:]])


def tagteller_command() -> list[str]:
    """The ``tagteller`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "tagteller"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tagteller"]


# -- machine ----------------------------------------------------------------------------------

def cpu_snapshot() -> tuple[float, float, float]:
    """(wall clock, busy CPU seconds of the whole machine, CPU seconds of this process and its
    waited-for children): the difference between two snapshots says how much CPU *other*
    processes used in between (steal time included, so a busy VM host counts too)."""
    busy = 0.0
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    t = os.times()
    return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system


def other_load(since: tuple[float, float, float]) -> float:
    """Cores used on average by other processes since the snapshot ``since``."""
    wall0, busy0, own0 = since
    wall1, busy1, own1 = cpu_snapshot()
    return max(0.0, ((busy1 - busy0) - (own1 - own0)) / max(wall1 - wall0, 1e-9))


#: The pyperf metadata kept in :func:`machine` (``python -m pyperf metadata`` shows them all).
PYPERF_METADATA = ("cpu_model_name", "cpu_count", "cpu_freq", "cpu_config", "platform", "aslr",
                   "python_implementation", "python_version", "python_compiler", "boot_time")


def pyperf_metadata() -> dict[str, Any]:
    """The machine and Python metadata pyperf collects for a run (its public API collects them
    with a run only: one placeholder value, dropped)."""
    import pyperf

    collected = pyperf.Run([1.0], metadata={"name": "machine"}, collect_metadata=True).get_metadata()
    return {key: collected[key] for key in PYPERF_METADATA if key in collected}


def machine() -> dict[str, Any]:
    """Cores, CPU model, vector flags, memory, load and library versions, with pyperf's
    metadata; also starts the measurement of what other processes use while the benchmark runs
    (see :func:`record`)."""
    metadata = pyperf_metadata()
    model, flags = metadata.get("cpu_model_name") or platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    mem_gb = None
    try:
        import psutil

        mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    import numpy
    import onnxruntime
    import PIL

    return {
        "cores": cores,
        "cpu": model,
        "flags": [f for f in VECTOR_FLAGS if f in flags],
        "memory_gb": mem_gb,
        "load": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "versions": {"numpy": numpy.__version__, "Pillow": PIL.__version__, "onnxruntime": onnxruntime.__version__},
        "pyperf": metadata,
        "cpu_snapshot": cpu_snapshot(),
    }


def describe_machine(m: dict[str, Any]) -> str:
    load = "n/a" if m["load"] is None else ", ".join(f"{v:.2f}" for v in m["load"])
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    extra = m.get("pyperf", {})
    details = "".join(f", {label} {extra[key]}" for key, label in
                      (("cpu_freq", "CPU frequency"), ("cpu_config", "CPU config"), ("aslr", "ASLR"))
                      if extra.get(key))
    return (f"{m['cores']} cores ({m['cpu']}), flags: {' '.join(m['flags']) or 'none of ' + '/'.join(VECTOR_FLAGS[:4])}, "
            f"{m['memory_gb']} GB RAM, load average {load} at the start; Python {m['python']}, {versions}"
            + (f"; {extra['platform']}" if extra.get("platform") else "") + details)


# -- results ----------------------------------------------------------------------------------

def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def record(args: argparse.Namespace, title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]],
           notes: Sequence[str] = (), machine_info: dict[str, Any] | None = None,
           data: dict[str, Any] | None = None,
           more_tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]] = ()) -> str:
    """Print the table(s) and notes; append a dated section to ``args.results`` unless
    ``--no-record``. ``more_tables``: ``(caption, headers, rows)`` after the main table.
    ``data`` (raw figures) is kept in an HTML comment for later comparison."""
    from tagteller.atomic import atomic_write_text

    m = machine_info or machine()
    load_now = os.getloadavg() if hasattr(os, "getloadavg") else None
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [markdown_table(headers, rows)]
    for caption, more_headers, more_rows in more_tables:
        body += ["", f"{caption}:", "", markdown_table(more_headers, more_rows)]
    table = "\n".join(body)
    others = other_load(m["cpu_snapshot"])
    busy = others >= BUSY_CORES
    quiet = (f"other processes used {others:.2f} cores on average during the run"
             + (": **the machine was busy, these figures are not clean; rerun when it is quiet**" if busy else
                " (quiet)"))
    parts = [f"### {title}{' (quick: tiny inputs, figures not meaningful)' if args.quick else ''}", "",
             f"- date: {when}",
             f"- command: `{command_line()}`",
             f"- machine: {describe_machine(m)}"
             + (f"; load average {load_now[0]:.2f} at the end" if load_now else ""),
             f"- {quiet}",
             "", table, ""]
    if data is not None:
        data = {**data, "other_cores": others}
    parts += [f"- {n}" for n in notes]
    if data is not None:
        parts += ["", f"<!-- figures: {json.dumps(data, sort_keys=True, default=str)} -->"]
    section = "\n".join(parts).rstrip() + "\n"
    print(f"\n{title}\n\n{table}\n" + "".join(f"\n- {n}" for n in [*notes, quiet]) + "\n", flush=True)
    if not args.no_record:
        path = Path(args.results)
        old = path.read_text(encoding="utf-8") if path.is_file() else RESULTS_HEADER
        atomic_write_text(path, old.rstrip() + "\n\n" + section)
        print(f"appended to {path}")
    return section


RESULTS_HEADER = """# Benchmarks

Measured figures for issue #7, appended by the scripts in `benchmarks/` (each section says the
command that produced it and the machine). See `benchmarks/README.md` for what each one measures.
"""


# -- child processes --------------------------------------------------------------------------

@dataclass
class ProcessRun:
    """A finished child process: wall seconds, peak RSS (MB) and its output."""

    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str

    def check(self, what: str) -> ProcessRun:
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise SystemExit(f"error: {what} failed with exit code {self.returncode}:\n{tail}")
        return self


#: Starts one command, waits for it, and writes its wall time and peak RSS to a report file. The
#: benchmark scripts start their children through it because on Linux a child's ``ru_maxrss``
#: also counts the resident memory of the process it was spawned from (shared until ``exec``):
#: started straight from a script that has numpy and onnxruntime loaded, ``tagteller scan`` would
#: be charged 100+ MB that are not its own. The launcher is a bare Python (about 10 MB).
_LAUNCHER = """
import json, os, sys, time
report, cmd = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawnp(cmd[0], cmd, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(report, "w") as fh:
    json.dump({"wall_s": wall, "maxrss_kb": usage.ru_maxrss, "code": os.waitstatus_to_exitcode(status)}, fh)
"""


def run_process(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> ProcessRun:
    """Run ``cmd`` to completion through the launcher above; wall time from spawn to exit (the
    launcher's own start-up excluded), peak RSS of ``cmd``'s process (``os.wait4``)."""
    with tempfile.TemporaryDirectory(prefix="tagteller-bench-run-") as tmp:
        report = Path(tmp) / "report.json"
        with open(Path(tmp) / "out", "w+b") as out, open(Path(tmp) / "err", "w+b") as err:
            proc = subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(report), *cmd],
                                  stdout=out, stderr=err, env=env, cwd=cwd)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
        if not report.is_file():  # the launcher itself failed (e.g. the command does not exist)
            return ProcessRun(0.0, 0.0, proc.returncode or 1, stdout, stderr)
        figures = json.loads(report.read_text())
    # ru_maxrss is in kilobytes on Linux.
    return ProcessRun(figures["wall_s"], figures["maxrss_kb"] / 1024, figures["code"], stdout, stderr)


def quiet_tf_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def repeats(name: str, values: Sequence[float], unit: str = "second") -> Any:
    """Repeated measurements (each > 0) of one thing as a ``pyperf.Benchmark``: ``.median()``,
    ``.mean()``, ``.stdev()`` (two values or more). ``unit``: pyperf's ``second``, ``byte``, or
    ``integer`` for anything else (e.g. images/s)."""
    import pyperf

    return pyperf.Benchmark([pyperf.Run(list(values), metadata={"name": name, "unit": unit},
                                        collect_metadata=False)])


def has_tensorflow() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


# -- the benchmark model ----------------------------------------------------------------------

@dataclass
class BenchModel:
    """The same model twice: ``.keras`` (seed-style side) and ``.onnx`` (tagteller's side)."""

    onnx: Path
    keras: Path | None
    int8: Path | None
    about: dict[str, Any]

    def describe(self) -> str:
        a = self.about
        if not a:
            return f"{self.onnx}"
        head = f"head fitted {a['head_epochs']} epochs on {a['train_images']} shoes photos" if a.get("head_epochs") \
            else "untrained head"
        return (f"shoes recipe: {a.get('backbone', 'MobileNet alpha 0.25')}, {a['input_size'][0]}x{a['input_size'][1]}, "
                f"weights {a['weights']}, {head}; ONNX parity with Keras: {a['parity']}")


def recipe_input_size() -> list[int]:
    """The input size of the recipe the benchmark model is built with (a cached model built
    for another size is rebuilt)."""
    from tagteller import plugins

    return list(plugins.get_domain(DOMAIN).recipe.input_size)


def recipe_backbone() -> str:
    """The backbone of the recipe the benchmark model is built with (a cached model built on
    another is rebuilt)."""
    from tagteller import plugins

    return plugins.get_domain(DOMAIN).recipe.backbone


def model_dir(cache: Path, quick: bool) -> Path:
    return cache / ("model-quick" if quick else "model")


def ensure_model(args: argparse.Namespace, need_keras: bool = False) -> BenchModel:
    """The model named by ``--model``/``--keras``, else the cached benchmark model (built on
    first use, in a child process that imports tensorflow)."""
    if getattr(args, "model", None) is not None:
        keras = getattr(args, "keras", None)
        if need_keras and keras is None:
            raise SystemExit("error: --model needs --keras (the same model as .keras) for the Keras side")
        return BenchModel(Path(args.model), Path(keras) if keras else None, None, {})
    folder = model_dir(cache_root(args.cache), args.quick)
    about_file = folder / "build.json"
    if about_file.is_file():
        built = json.loads(about_file.read_text())
        if built.get("input_size") != recipe_input_size() or built.get("backbone", "MobileNet") != recipe_backbone():
            print(f"the shoes recipe's backbone or input size changed: rebuilding the benchmark model in {folder}",
                  flush=True)
            about_file.unlink()
    if not about_file.is_file():
        if not has_tensorflow():
            raise SystemExit("error: building the benchmark model needs the [train] extra (tensorflow); "
                             "or pass --model FILE.onnx")
        print(f"building the benchmark model in {folder} (once) ...", flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "build-model", "--out", str(folder)]
        if args.quick:
            cmd.append("--quick")
        proc = subprocess.run(cmd, env=quiet_tf_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: building the benchmark model failed:\n{proc.stderr[-3000:]}")
    about = json.loads(about_file.read_text())
    int8 = folder / "model-int8.onnx"
    return BenchModel(folder / "model.onnx", folder / "model.keras", int8 if int8.is_file() else None, about)


def scan_target(model: Path, cache: Path) -> tuple[list[str], dict[str, str]]:
    """How ``tagteller scan`` is pointed at ``model``: ``--domain NAME`` with the model installed
    for its domain in a ``TAGTELLER_HOME`` under the cache (the way a user runs it), or
    ``--model PATH`` for a model of a domain no plugin registers. Returns the options and the
    environment to run with."""
    from tagteller import plugins
    from tagteller.engine import read_model_info
    from tagteller.errors import TagtellerError

    domain = read_model_info(model).domain
    try:
        plugins.get_domain(domain)
    except TagtellerError:
        return ["--model", str(model)], dict(os.environ)
    home = cache / f"home-{domain}"
    target = home / "data" / "models" / f"{domain}.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.read_bytes() != model.read_bytes():
        shutil.copyfile(model, target)
    env = dict(os.environ)
    env["TAGTELLER_HOME"] = str(home)
    return ["--domain", domain], env


def shoes_split(quick: bool):
    """The shoes dataset's train and validation samples (the recipe's split), or None."""
    from tagteller import plugins
    from tagteller.datasets import stratified_split

    if not SHOES_DATA.is_dir():
        return None
    domain = plugins.get_domain(DOMAIN)
    dataset = domain.layout.load(SHOES_DATA, domain.labels)
    train, val = stratified_split(dataset.samples, domain.recipe.val_fraction, domain.recipe.seed)
    if quick:
        train, val = train[::40], val[::15]
    return train, val


def _build_model(out: Path, quick: bool) -> None:
    """Runs in the ``build-model`` child: build, fit the head, save, export, quantize."""
    import numpy as np

    from tagteller import plugins
    from tagteller.atomic import atomic_write_text
    from tagteller.modelfile import ModelInfo
    from tagteller.train.backbones import WeightsChoice, WeightsUnavailableError, resolve_weights
    from tagteller.train.export import parity_check, quantize_int8, to_onnx, write_model_file
    from tagteller.train.model import build_classifier, compile_model, save_checkpoint, set_unfrozen
    from tagteller.sample_decoding import decode_samples
    from tagteller.train.pipeline import training_dataset

    started = time.perf_counter()
    domain = plugins.get_domain(DOMAIN)
    recipe = domain.recipe
    labels = domain.labels
    weights = WeightsChoice("none")
    if not quick:
        try:
            weights = resolve_weights(recipe.weights, recipe.backbone, recipe.backbone_options, recipe.input_size)
        except WeightsUnavailableError as exc:
            print(f"benchmark model: random weights ({exc})", flush=True)
    use_imagenet = weights.kind == "file"
    model = build_classifier(recipe, len(labels), weights)
    split = shoes_split(quick)
    head_epochs = 0
    train_count = 0
    rng = np.random.default_rng(0)
    if split is not None:
        train, val = split
        index = {label: i for i, label in enumerate(labels)}
        decoded_train = decode_samples(train, index, recipe.input_size, recipe.preprocessing)
        decoded_val = decode_samples(val, index, recipe.input_size, recipe.preprocessing)
        calibration = decoded_train.images
        check_images = decoded_val.images
        train_count = len(decoded_train)
        if use_imagenet:
            head_epochs = HEAD_EPOCHS
            first = recipe.phases[0]
            set_unfrozen(model, recipe, first.unfreeze)
            compile_model(model, first.learning_rate, recipe.label_smoothing)
            ds = training_dataset(decoded_train, len(labels), recipe.batch_size, {}, recipe.seed)
            model.fit(ds, epochs=head_epochs, verbose=0)
    else:
        shape = (16, *recipe.input_size, recipe.preprocessing.channels)
        calibration = check_images = rng.integers(0, 256, shape, dtype=np.uint8)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, out / "model.keras")
    proto = to_onnx(model, recipe.input_size, recipe.preprocessing.channels)
    parity = parity_check(model, proto, check_images.astype(np.float32))
    height, width = recipe.input_size
    info = ModelInfo(domain=DOMAIN, labels=tuple(labels), height=height, width=width,
                     color_mode=recipe.preprocessing.color_mode, preprocessing=recipe.preprocessing,
                     model_version="bench", training={"purpose": "benchmarks (issue #7)"})
    write_model_file(proto, info, out / "model.onnx")
    calibration = calibration[: (16 if quick else 128)].astype(np.float32)
    int8_proto = quantize_int8(proto, calibration)
    write_model_file(int8_proto, dataclasses.replace(info, metrics={"quantization": "int8-static-qdq"}),
                     out / "model-int8.onnx")
    about = {"backbone": recipe.backbone, "weights": "imagenet" if use_imagenet else "random", "head_epochs": head_epochs,
             "train_images": train_count, "input_size": list(recipe.input_size),
             "parity": parity.describe(), "calibration_images": len(calibration),
             "build_s": round(time.perf_counter() - started, 1)}
    atomic_write_text(out / "build.json", json.dumps(about, indent=2))


def _quantize(model: Path, out: Path, quick: bool) -> None:
    """Runs in the ``quantize`` child: the training side's static QDQ quantization, calibrated on
    the shoes training split (random pixels when it is absent), metadata kept."""
    import numpy as np
    import onnx

    from tagteller.engine import read_model_info
    from tagteller.train.export import INT8_CALIBRATION_IMAGES, quantize_int8, write_model_file

    info = read_model_info(model)
    split = shoes_split(quick)
    if split is not None:
        from tagteller.sample_decoding import decode_samples

        index = {label: i for i, label in enumerate(info.labels)}
        train = [s for s in split[0] if s.label in index][:INT8_CALIBRATION_IMAGES]
        images = decode_samples(train, index, info.input_size, info.preprocessing).images
    else:
        images = np.random.default_rng(0).integers(0, 256, (16, info.height, info.width, info.channels), np.uint8)
    proto = quantize_int8(onnx.load(str(model)), images.astype(np.float32))
    write_model_file(proto, dataclasses.replace(info, metrics={"quantization": "int8-static-qdq"}), out)


def ensure_int8(args: argparse.Namespace, model: BenchModel) -> Path:
    """``--int8``, the benchmark model's int8 copy, or one quantized now (in a child process)."""
    if getattr(args, "int8", None) is not None:
        return Path(args.int8)
    if model.int8 is not None:
        return model.int8
    out = cache_root(args.cache) / f"int8-{model.onnx.stem}-{model.onnx.stat().st_size}.onnx"
    if not out.is_file():
        if not has_tensorflow():
            raise SystemExit("error: quantizing needs the [train] extra; or pass --int8 FILE.onnx")
        cmd = [sys.executable, str(Path(__file__).resolve()), "quantize", "--model", str(model.onnx), "--out", str(out)]
        proc = subprocess.run(cmd + (["--quick"] if args.quick else []), env=quiet_tf_env(),
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: quantizing failed:\n{proc.stderr[-3000:]}")
    return out


# -- the photo set ----------------------------------------------------------------------------

def _source_photos() -> list[Path]:
    from tagteller.datasets import IMAGE_EXTENSIONS

    found: list[Path] = []
    for root in PHOTO_SOURCES:
        if root.is_dir():
            found += sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return found


def _synthetic_photo(rng, size: tuple[int, int]):
    """A smooth colour field with a few shapes: something to decode when no photos exist."""
    import numpy as np
    from PIL import Image, ImageDraw

    w, h = size
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    im = Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        draw.ellipse((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return im


def ensure_photos(args: argparse.Namespace, count: int, longest: tuple[int, int] = PHOTO_LONGEST_SIDE) -> list[Path]:
    """Every photo in ``--images DIR`` (``count`` does not apply), else ``count`` phone-size photos
    cached under the cache folder."""
    import numpy as np
    from PIL import Image, ImageOps

    from tagteller.datasets import IMAGE_EXTENSIONS
    from tagteller.imaging import open_image

    if getattr(args, "images", None) is not None:
        folder = Path(args.images)
        photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not photos:
            raise SystemExit(f"error: {folder}: no photos found")
        return photos
    sources = _source_photos()
    kind = "real" if sources else "synthetic"
    cache = cache_root(args.cache)
    stem = f"photos-{kind}-*-{longest[0]}-{longest[1]}-q{PHOTO_QUALITY}"
    folder = cache / stem.replace("*", str(count))
    done = folder / "complete.json"
    names = [folder / f"photo-{i:04d}.jpg" for i in range(count)]
    if done.is_file() and all(p.is_file() for p in names):
        return names
    # The set is built image by image from one seeded sequence, so the first ``count`` photos of
    # a larger set are exactly the smaller set: link them into a folder of their own (the
    # benchmarks scan whole folders) rather than writing them again.
    for existing in sorted(cache.glob(stem), key=lambda p: p.name):
        have = json.loads((existing / "complete.json").read_text()).get("count", 0) \
            if (existing / "complete.json").is_file() else 0
        if have > count:
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                if not name.is_file():
                    try:
                        os.link(existing / name.name, name)
                    except OSError:
                        shutil.copyfile(existing / name.name, name)
            done.write_text((existing / "complete.json").read_text().replace(f'"count": {have}', f'"count": {count}'))
            return names
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    order = rng.permutation(len(sources)) if sources else None
    plan = [(i, int(rng.integers(longest[0], longest[1] + 1)), int(rng.integers(0, 2**31))) for i in range(count)]
    print(f"writing {count} phone-size photos to {folder} (once) ...", flush=True)

    def make(item: tuple[int, int, int]) -> None:
        i, side, seed = item
        local = np.random.default_rng(seed)
        if sources:
            with open_image(sources[order[i % len(sources)]]) as src:  # tagteller's one opener (HEIC too)
                im = ImageOps.exif_transpose(src).convert("RGB")
        else:
            im = _synthetic_photo(local, (4 * side // 3, side) if i % 2 else (side, 3 * side // 4))
        scale = side / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.BICUBIC)
        pixels = np.asarray(im, dtype=np.float32)
        pixels += local.normal(0.0, PHOTO_GRAIN, pixels.shape).astype(np.float32)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(
            names[i], "JPEG", quality=PHOTO_QUALITY)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(make, plan))
    done.write_text(json.dumps({"count": count, "sources": kind, "longest_side": list(longest),
                                "quality": PHOTO_QUALITY, "grain": PHOTO_GRAIN}))
    return names


def warm_page_cache(paths: Sequence[Path]) -> None:
    """Read every file once, so that no side of a comparison pays for the disk and the first
    measurement is not slower than the next (the photo set is ~600 MB and other work evicts it)."""
    for path in paths:
        with open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass


def describe_photos(photos: Sequence[Path]) -> str:
    from tagteller.imaging import open_image

    sizes = []
    for p in photos[:200]:
        with open_image(p) as im:
            sizes.append(im.size)
    mp = statistics.mean(w * h for w, h in sizes) / 1e6
    mb = statistics.mean(p.stat().st_size for p in photos[:200]) / 1e6
    longest = [max(s) for s in sizes]
    return (f"{len(photos)} JPEGs, longest side {min(longest)}-{max(longest)} px, mean {mp:.1f} MP, "
            f"mean {mb:.2f} MB per file")


# -- command line: the model builder child ----------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="benchmark helpers (run by the benchmark scripts)")
    sub = p.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build-model", help="build, export and quantize the benchmark model")
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--quick", action="store_true")
    quant = sub.add_parser("quantize", help="static int8 copy of an ONNX model, calibrated on shoes photos")
    quant.add_argument("--model", type=Path, required=True)
    quant.add_argument("--out", type=Path, required=True)
    quant.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.command == "build-model":
        _build_model(args.out, args.quick)
    elif args.command == "quantize":
        _quantize(args.model, args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
