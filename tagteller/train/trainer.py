"""``tagteller train`` and ``tagteller export``, step by step.

:func:`train_domain`:

1. read the dataset with the domain's layout; split it (:func:`tagteller.datasets.stratified_split`,
   always with the recipe's seed, so ``tagteller evaluate --split val`` sees the same held-out
   images); add feedback images (``tagteller.feedback``) to the training side only;
2. resume from the best earlier model of the domain that fits (same labels, backbone, input
   size, preprocessing) unless ``--fresh``; otherwise build a new model;
3. open a run folder (:mod:`~tagteller.runs`) and decode the images;
4. run the phases (:mod:`~tagteller.train.loop`);
5. export ``best.keras`` to ``model.onnx``, check parity with Keras on the validation images,
   measure it with the engine, optionally quantize to int8;
6. install it when it beats the model in use on the same validation split (``--force``:
   always); a model that fails the parity check is never installed.

:func:`export_checkpoint` does step 5 for any saved checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagteller import plugins, runs
from tagteller.atomic import atomic_write_text
from tagteller.datasets import Dataset, Sample, stratified_split
from tagteller.domain import Domain, Recipe
from tagteller.errors import DatasetError, TagtellerError
from tagteller.evaluate.evaluate import keys_sha256
from tagteller.exitcodes import ExitCode
from tagteller.modelfile import ModelInfo
from tagteller.names import validate_labels
from tagteller.paths import installed_model_path, portable_paths
from tagteller.stopping import StoppingPolicy
from tagteller.training_prompt import NeverAsk, Prompter

Log = Callable[[str], None]
#: At most this many skipped-file lines are printed; the rest are counted.
MAX_LISTED_PROBLEMS = 20

def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class TrainOptions:
    """What the ``train`` command line can change; None means "as the domain's recipe says"."""

    data: Path
    epochs: int | None = None
    time_budget_s: float | None = None
    fresh: bool = False
    force: bool = False
    weights: str | None = None  # "imagenet", "none" or a path; None: the recipe's
    install_to: Path | None = None
    quantize: str | None = None
    seed: int | None = None
    batch_size: int | None = None
    stopping: str | None = None
    stop_params: dict[str, Any] = field(default_factory=dict)
    use_feedback: bool = True
    use_taught: bool = False  # --with-taught: labels taught with `tagteller teach` become training data
    workers: int | None = None
    unknown_data: list[str] = field(default_factory=list)  # --unknown-data: DIR or DOMAIN=DIR
    command_line: str = ""


@dataclass
class TrainResult:
    """How a run ended: ``outcome`` is ``installed``, ``kept`` (not better), ``refused`` (parity
    failed) or ``interrupted``; ``exit_code`` is what the command exits with."""

    run_id: str
    run_dir: Path
    outcome: str
    exit_code: ExitCode
    message: str
    model_path: Path | None = None
    installed_path: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


# -- policy and recipe ------------------------------------------------------------------------

def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` with a JSON value (``0.9``, ``5``, ``null``, ``true``) or else a string."""
    if "=" not in text:
        raise TagtellerError(f"--stop-param {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip().replace("-", "_")
    if raw.strip().lower() == "none":
        return key, None
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def choose_policy(domain: Domain, name: str | None, params: dict[str, Any]) -> StoppingPolicy:
    """``--stopping NAME`` from the registered policies, or the domain's policy with ``params``
    changed (when it is a dataclass, as the built-in one is)."""
    try:
        if name:
            factories = plugins.stopping_policies()
            if name not in factories:
                raise TagtellerError(f"unknown stopping policy {name!r}; known: {', '.join(sorted(factories))}")
            policy = factories[name](**params)
        elif params:
            if not dataclasses.is_dataclass(domain.stopping):
                raise TagtellerError(f"domain {domain.name!r}: its stopping policy takes no --stop-param; use --stopping NAME")
            policy = dataclasses.replace(domain.stopping, **params)
        else:
            policy = domain.stopping
    except (TypeError, ValueError) as exc:
        raise TagtellerError(f"stopping policy parameters: {exc}") from None
    if not isinstance(policy, StoppingPolicy):
        raise TagtellerError(f"stopping policy {name!r} has no decide()/describe()")
    return policy


def effective_recipe(recipe: Recipe, options: TrainOptions) -> Recipe:
    changes: dict[str, Any] = {}
    if options.batch_size is not None:
        changes["batch_size"] = options.batch_size
    if options.weights is not None:
        changes["weights"] = None if options.weights.lower() == "none" else options.weights
    return recipe.with_(**changes) if changes else recipe


# -- data -------------------------------------------------------------------------------------

@dataclass
class PreparedData:
    """The labelled samples of one training: labels in output order, the two sides of the split."""

    dataset: Dataset
    labels: tuple[str, ...]
    train: list[Sample]
    val: list[Sample]
    feedback_count: int
    skipped: list[tuple[str, str]]
    fingerprint: str
    val_keys_sha256: str


def _list_problems(where: Path, problems: Sequence[tuple[str, str]], what: str, log: Log) -> None:
    for key, reason in problems[:MAX_LISTED_PROBLEMS]:
        log(f"warning: {where / key}: {reason}; {what}")
    if len(problems) > MAX_LISTED_PROBLEMS:
        log(f"warning: ... and {len(problems) - MAX_LISTED_PROBLEMS} more {what}")


def prepare_data(domain: Domain, root: Path, recipe: Recipe, use_feedback: bool, log: Log,
                 use_taught: bool = False) -> PreparedData:
    """Load, filter and split the data; add feedback images to the training side; with
    ``use_taught``, add the photos of labels taught with ``tagteller teach``, split like the
    dataset (so the new labels are validated too)."""
    dataset = domain.layout.load(Path(root), domain.labels)
    skipped = list(dataset.skipped)
    samples = list(dataset.samples)
    labels = tuple(dataset.labels)
    if not domain.allow_new_labels:
        foreign = [s for s in samples if s.label not in domain.labels]
        if foreign:
            names = sorted({s.label for s in foreign})
            log(f"warning: {len(foreign)} image(s) labelled {', '.join(names)} skipped: not labels of domain "
                f"{domain.name!r} ({', '.join(domain.labels)})")
            skipped += [(s.key, f"label {s.label!r} is not one of the domain's") for s in foreign]
            samples = [s for s in samples if s.label in domain.labels]
        labels = tuple(domain.labels)
    _list_problems(dataset.root, dataset.skipped, "skipped", log)
    train, val = stratified_split(samples, recipe.val_fraction, recipe.seed)
    if not train or not val:
        raise DatasetError(f"{root}: too few images to split into training and validation "
                           f"({len(train)} and {len(val)}; each label needs at least 2 images)")
    feedback: list[Sample] = []
    if use_feedback and importlib.util.find_spec("tagteller.feedback") is not None:
        from tagteller.feedback import feedback_samples

        for s in feedback_samples(domain.name):
            if s.label in labels or domain.allow_new_labels:
                feedback.append(s)
                if s.label not in labels:
                    labels = labels + (s.label,)
            else:
                skipped.append((s.key, f"feedback label {s.label!r} is not one of the domain's"))
        if feedback:
            log(f"added {len(feedback)} feedback image(s) to the training side (--no-feedback leaves them out)")
    taught: list[Sample] = []
    if use_taught:
        from tagteller.taught import taught_samples

        filed = {s.path.name for s in feedback if s.path is not None}  # taught from the inbox: once only
        taught = [s for s in taught_samples(domain.name)
                  if (s.label in labels or domain.allow_new_labels) and s.path.name not in filed]
        labels = labels + tuple(dict.fromkeys(s.label for s in taught if s.label not in labels))
        taught_train, taught_val = stratified_split(taught, recipe.val_fraction, recipe.seed)
        train, val = train + taught_train, sorted(val + taught_val, key=lambda s: s.key)
        log(f"added {len(taught)} taught photo(s) ({', '.join(sorted({s.label for s in taught})) or 'none'}): "
            f"{len(taught_train)} to training, {len(taught_val)} to validation")
    labels = validate_labels(labels)
    missing = [label for label in labels if not any(s.label == label for s in train + feedback)]
    if missing:
        log(f"warning: no training images for label(s) {', '.join(missing)}")
    fingerprint = dataset.fingerprint()
    if feedback or taught:
        fingerprint = hashlib.sha256((fingerprint + "\n" + "\n".join(sorted(s.key for s in feedback + taught))).encode()).hexdigest()
    return PreparedData(dataset, labels, train + feedback, val, len(feedback), skipped, fingerprint,
                        keys_sha256([s.key for s in val]))


# -- metadata ---------------------------------------------------------------------------------

def training_summary(history: dict[str, Any], recipe: Recipe, weights: str, data: PreparedData | None,
                     command_line: str) -> dict[str, Any]:
    """The ``training`` metadata of a model: backbone, recipe, history summary, data, time.
    Paths are recorded relative to the working folder (:func:`tagteller.paths.portable_paths`):
    a shipped model says how it was made, not where."""
    epochs = history.get("epochs") or []
    if weights and Path(str(weights)).is_absolute():
        weights = Path(str(weights)).name
    command_line = portable_paths(command_line) if command_line else command_line
    return {
        "run_id": history.get("run_id"),
        "backbone": recipe.backbone,
        "backbone_options": recipe.backbone_options,
        "weights": weights,
        "recipe": runs.recipe_json(recipe),
        "stopping": history.get("stopping"),
        "epochs": len(epochs),
        "history": {
            "best": history.get("best"),
            "phases": history.get("phases"),
            "decisions": history.get("decisions"),
            "val_accuracy": [e.get("val_accuracy") for e in epochs],
            "status": history.get("status"),
        },
        "resumed_from": (history.get("resumed_from") or {}).get("run_id"),
        "data_fingerprint": history.get("data_fingerprint"),
        "val_keys_sha256": history.get("val_keys_sha256"),
        "train_count": (history.get("counts") or {}).get("train"),
        "val_count": (history.get("counts") or {}).get("val"),
        "feedback_count": data.feedback_count if data else None,
        "wall_time_s": history.get("wall_time_s"),
        "command_line": command_line,
    }


def make_info(domain: str, labels: Sequence[str], recipe: Recipe, metrics: dict[str, Any],
              training: dict[str, Any], version: str) -> ModelInfo:
    height, width = recipe.input_size
    return ModelInfo(domain=domain, labels=tuple(labels), height=height, width=width,
                     color_mode=recipe.preprocessing.color_mode, preprocessing=recipe.preprocessing,
                     output="probabilities", metrics=metrics, training=training, model_version=version)


# -- export -----------------------------------------------------------------------------------

@dataclass
class Exported:
    """A model exported from a checkpoint: where, its parity and its measured figures."""

    model_path: Path
    parity: Any
    metrics: dict[str, Any]
    measurement: Any
    candidate: Path  # the file to install: the float model, or the int8 one when kept


@dataclass
class OpenSetData:
    """What calibration and the open-set gate are fitted on (:mod:`~tagteller.openset_graph`):
    the validation labels (their images are the export's ``val_images``), the domain's own
    training images, and unknown images with the count from each source."""

    val_labels: np.ndarray
    own_images: np.ndarray
    unknown_images: np.ndarray
    sources: dict[str, int]
    seed: int = 0


#: At most this many training images stand for the domain in the open-set gate.
GATE_OWN_IMAGES = 1000
#: ``--quantize``: int8 (falling back to fp16 when it loses more than a point) or fp16 alone.
QUANTIZE_CHOICES = (None, "int8", "fp16")


def open_set_data(val_labels: np.ndarray, train_images: np.ndarray, unknown_specs: Sequence[str], recipe: Recipe,
                  seed: int, log: Log, workers: int | None = None) -> OpenSetData:
    from tagteller.unknown_data import load_unknowns

    unknown, sources = load_unknowns(unknown_specs, recipe.input_size, recipe.preprocessing, seed, log, workers)
    if sources:
        log("open-set negatives: " + ", ".join(f"{n} {c}" for n, c in sources.items()) + " image(s), plus generated ones")
    else:
        log("open-set negatives: generated images only (--unknown-data DIR teaches the gate real other things)")
    own = train_images[np.random.default_rng(seed).permutation(len(train_images))[:GATE_OWN_IMAGES]]
    return OpenSetData(np.asarray(val_labels), own, unknown, sources, seed)


def _smaller_copy(kind: str, proto: Any, info: ModelInfo, output: Path, val_images: np.ndarray,
                  val_samples: Sequence[Sample], calibration_images: np.ndarray | None, measurement: Any,
                  metrics: dict[str, Any], log: Log) -> tuple[Path, Any] | None:
    """Write an ``int8`` (static QDQ) or ``fp16`` (float16-stored weights) copy of ``proto``
    beside ``output``, with its own open-set threshold, and measure it; keep it (return its path
    and measurement, and put its figures in ``metrics[kind]``) when validation top-1 drops by at
    most :data:`~tagteller.train.export.INT8_MAX_DROP`, else delete it."""
    from tagteller.train.export import (
        INT8_CALIBRATION_IMAGES,
        INT8_MAX_DROP,
        half_precision_weights,
        quantize_int8,
        write_model_file,
    )
    from tagteller.evaluate.measure import measure_model

    path = output.with_name(f"{output.stem}-{kind}.onnx")
    if kind == "int8":
        log(f"quantizing to int8 (static, calibrated on {min(len(calibration_images), INT8_CALIBRATION_IMAGES)} "
            "training images)")
        small = quantize_int8(proto, calibration_images)
        method = "int8-static-qdq"
    else:
        log("storing the weights as float16 (computed in float32)")
        small = half_precision_weights(proto)
        method = "fp16-weights"
    small_info = info
    if info.open_set is not None:  # the copy's scores differ a little: its own threshold
        from tagteller.openset_graph import choose_threshold

        threshold, rejected = choose_threshold(small, np.asarray(val_images, np.float32))
        small_info = dataclasses.replace(info, open_set={**info.open_set, "threshold": round(threshold, 6),
                                                         "val_false_rejection": round(rejected, 6)})
    write_model_file(small, small_info, path)
    m = measure_model(path, val_samples)
    drop = measurement.accuracy - m.accuracy
    kept = drop <= INT8_MAX_DROP + 1e-12
    figures = {"val_accuracy": round(m.accuracy, 6), "macro_f1": round(m.macro_f1, 6),
               "size_bytes": path.stat().st_size, "float_size_bytes": output.stat().st_size,
               "accuracy_drop": round(drop, 6), "kept": kept}
    metrics[kind] = figures
    log(f"{kind}: accuracy {m.accuracy:.4f} (float {measurement.accuracy:.4f}), "
        f"{figures['size_bytes'] / 1e6:.2f} MB vs {figures['float_size_bytes'] / 1e6:.2f} MB: "
        f"{'kept' if kept else 'dropped (more than 1 point lost)'}")
    if not kept:
        path.unlink(missing_ok=True)
        return None
    small_metrics = {**m.as_metrics(), "quantization": method, "parity": metrics["parity"],
                     "float": {"val_accuracy": metrics["val_accuracy"], "macro_f1": metrics["macro_f1"]},
                     **{k: metrics[k] for k in ("int8", "fp16") if k in metrics}}
    write_model_file(small, dataclasses.replace(small_info, metrics=small_metrics), path)
    return path, m


def class_references_of(proto: Any, val_images: np.ndarray, open_set: OpenSetData,
                        labels: Sequence[str], log: Log) -> dict[str, Any] | None:
    """What taught labels are scored against (:func:`tagteller.taught.class_references`): the
    exported model's own embeddings of the validation images. None (said) when a label has no
    validation image: the model then cannot learn taught labels."""
    from tagteller.taught import class_references
    from tagteller.openset_graph import EMBEDDING_OUTPUT, run

    missing = [label for i, label in enumerate(labels) if not np.any(np.asarray(open_set.val_labels) == i)]
    if missing:
        log(f"warning: no class references (`tagteller teach` needs them): no validation images of {', '.join(missing)}")
        return None
    embeddings = run(proto, np.asarray(val_images, np.float32), [EMBEDDING_OUTPUT])[EMBEDDING_OUTPUT]
    return class_references(embeddings, open_set.val_labels, labels, seed=open_set.seed)


def export_model(keras_model: Any, output: Path, domain: str, labels: Sequence[str], recipe: Recipe,
                 training: dict[str, Any], version: str, val_images: np.ndarray, val_samples: Sequence[Sample],
                 quantize: str | None, calibration_images: np.ndarray | None, log: Log,
                 fallback_metrics: dict[str, Any] | None = None, open_set: OpenSetData | None = None) -> Exported:
    """ONNX + parity + calibration and open-set score (with ``open_set``) + metadata (+ int8)
    for ``keras_model``; measured on ``val_samples`` with the engine when there are any."""
    from tagteller.train.export import parity_check, to_onnx, write_model_file
    from tagteller.evaluate.measure import measure_model

    if recipe.test_time_flip:
        from tagteller.train.model import with_test_time_flip

        keras_model = with_test_time_flip(keras_model)
    log(f"exporting to {output}" + (" (answers averaged over the image and its mirror image)"
                                    if recipe.test_time_flip else ""))
    proto = to_onnx(keras_model, recipe.input_size, recipe.preprocessing.channels)
    parity = parity_check(keras_model, proto, val_images)
    log(parity.describe())
    info = make_info(domain, labels, recipe, dict(fallback_metrics or {}), training, version)
    if open_set is not None and parity.passed:
        from tagteller.openset_graph import add_open_set

        fit = add_open_set(proto, np.asarray(val_images, np.float32), open_set.val_labels, open_set.own_images,
                           open_set.unknown_images, open_set.sources, open_set.seed, recipe.preprocessing)
        proto = fit.proto
        info = dataclasses.replace(info, open_set=fit.open_set, calibration=fit.calibration,
                                   class_references=class_references_of(proto, val_images, open_set, labels, log))
        log(f"calibrated: temperature {fit.calibration['temperature']:.3f}, ECE {fit.calibration['ece_before']:.3f} -> "
            f"{fit.calibration['ece_after']:.3f} (cross-fitted); open-set threshold {fit.open_set['threshold']:.4f} "
            f"rejects {fit.open_set['val_false_rejection']:.1%} of the validation images and "
            + ", ".join(f"{v:.0%} of {k}" for k, v in fit.open_set["generated_rejection"].items()) + " (generated)")
    write_model_file(proto, info, output)
    measurement = None
    metrics = dict(fallback_metrics or {})
    if val_samples:
        measurement = measure_model(output, val_samples)
        metrics = measurement.as_metrics()
        if measurement.failures:
            metrics["val_failures"] = len(measurement.failures)
        log(f"ONNX model on {measurement.count} validation images: accuracy {measurement.accuracy:.4f}, "
            f"macro-F1 {measurement.macro_f1:.4f}")
    metrics["parity"] = parity.as_dict()
    candidate = output
    if quantize in ("int8", "fp16") and parity.passed and measurement is not None:
        tries = ["int8", "fp16"] if quantize == "int8" else ["fp16"]
        for kind in tries:
            if kind == "int8" and calibration_images is None:
                log("warning: int8 quantization skipped (it needs calibration images: --data DIR)")
                continue
            smaller = _smaller_copy(kind, proto, info, output, val_images, val_samples, calibration_images,
                                    measurement, metrics, log)
            if smaller is not None:
                candidate, measurement = smaller
                break
    elif quantize is not None:
        log(f"warning: --quantize {quantize} skipped (it needs a passed parity check and the data: --data DIR)")
    write_model_file(proto, dataclasses.replace(info, metrics=metrics), output)
    return Exported(output, parity, metrics, measurement, candidate)


# -- train ------------------------------------------------------------------------------------

def train_domain(domain: Domain, options: TrainOptions, prompter: Prompter | None = None,
                 log: Log = _stderr) -> TrainResult:
    """The whole ``tagteller train`` (see the module docstring)."""
    import keras

    prompter = prompter or NeverAsk()
    recipe = effective_recipe(domain.recipe, options)
    policy = choose_policy(domain, options.stopping, options.stop_params)
    if options.quantize not in QUANTIZE_CHOICES:
        raise TagtellerError(f"--quantize {options.quantize!r}: 'int8' or 'fp16'")
    data = prepare_data(domain, options.data, recipe, options.use_feedback, log, use_taught=options.use_taught)
    seed = options.seed if options.seed is not None else recipe.seed
    keras.utils.set_random_seed(seed)
    model, resumed, weights_text = _start_model(domain.name, recipe, data.labels, options.fresh, log)

    run_id, run_dir = runs.new_run_dir(domain.name)
    history = runs.RunHistory(run_dir, {
        "domain": domain.name, "run_id": run_id, "recipe": runs.recipe_json(recipe),
        "stopping": policy.describe(), "labels": list(data.labels), "data_fingerprint": data.fingerprint,
        "val_keys_sha256": data.val_keys_sha256, "data_root": str(Path(options.data).resolve()),
        "command_line": options.command_line, "seed": seed,
    })
    log(f"run {run_id}: {run_dir}")
    try:
        return _run(domain, options, recipe, policy, data, model, resumed, weights_text, seed, run_id, run_dir,
                    history, prompter, log)
    except BaseException as exc:
        history.abandon(f"{exc.__class__.__name__}: {exc}")
        raise


def _start_model(domain: str, recipe: Recipe, labels: tuple[str, ...], fresh: bool,
                 log: Log) -> tuple[Any, runs.EarlierRun | None, str]:
    """The best earlier model that fits (unless ``fresh``), else a new one from the recipe."""
    from tagteller.train.backbones import resolve_weights
    from tagteller.train.model import build_classifier, load_checkpoint

    if not fresh:
        candidates, notes = runs.resume_candidates(domain, labels, recipe)
        for note in notes:
            log(note)
        for run in candidates:
            try:
                return load_checkpoint(run.checkpoint), run, f"resumed from run {run.run_id}"
            except TagtellerError as exc:
                log(f"warning: {exc}; trying an older run")
    weights = resolve_weights(recipe.weights, recipe.backbone, recipe.backbone_options, recipe.input_size)
    log(f"building {recipe.backbone} (weights: {weights.describe()})")
    return build_classifier(recipe, len(labels), weights), None, weights.describe()


def _run(domain: Domain, options: TrainOptions, recipe: Recipe, policy: StoppingPolicy, data: PreparedData,
         model: Any, resumed: runs.EarlierRun | None, weights_text: str, seed: int, run_id: str, run_dir: Path,
         history: runs.RunHistory, prompter: Prompter, log: Log) -> TrainResult:
    """Everything after the run folder exists: decode, train, export, install."""
    from tagteller.train.export import INT8_CALIBRATION_IMAGES
    from tagteller.install import decide_install, install_model
    from tagteller.train.loop import LoopSettings, ScalarLog, TrainingLoop
    from tagteller.train.model import load_checkpoint, predict_probabilities
    from tagteller.sample_decoding import decode_samples
    from tagteller.train.pipeline import class_weights, evaluation_dataset, training_dataset

    label_index = {label: i for i, label in enumerate(data.labels)}
    log(f"decoding {len(data.train)} training and {len(data.val)} validation images at "
        f"{recipe.input_size[0]}x{recipe.input_size[1]} {recipe.preprocessing.color_mode}")
    train_images = decode_samples(data.train, label_index, recipe.input_size, recipe.preprocessing, options.workers)
    val_images = decode_samples(data.val, label_index, recipe.input_size, recipe.preprocessing, options.workers)
    root = data.dataset.root
    _list_problems(root, train_images.failures + val_images.failures, "skipped (unreadable)", log)
    if len(train_images) == 0 or len(val_images) == 0:
        raise DatasetError(f"{root}: no readable images on the {'training' if not len(train_images) else 'validation'} side")
    history.data["counts"] = {
        "train": len(train_images), "val": len(val_images), "feedback": data.feedback_count,
        "skipped": len(data.skipped), "unreadable": len(train_images.failures) + len(val_images.failures),
        "per_label_train": {label: int(n) for label, n in zip(data.labels, train_images.counts(len(data.labels)))},
    }
    history.save()
    val_samples = [s for s in data.val if s.key not in {k for k, _ in val_images.failures}]

    start_phase = 0
    if resumed is not None:
        start_phase = min(resumed.last_phase, len(recipe.phases) - 1)
        accuracy = float((predict_probabilities(model, val_images.images).argmax(1) == val_images.labels).mean())
        history.data["resumed_from"] = {"run_id": resumed.run_id, "checkpoint": str(resumed.checkpoint),
                                        "val_accuracy_before": round(accuracy, 6), "start_phase": start_phase}
        log(f"resuming from run {resumed.run_id} (its best val accuracy {resumed.best_val_accuracy:.4f}; "
            f"{accuracy:.4f} on this split), phase {start_phase}; --fresh starts over")

    weights_for_classes = class_weights(train_images.labels, len(data.labels), recipe.class_weights)
    if weights_for_classes:
        log("classes are imbalanced: class weights " +
            ", ".join(f"{data.labels[i]} {w:.2f}" for i, w in weights_for_classes.items()))
    if recipe.cached_views:
        trained, train_ds, val_ds = _cached_prefix_inputs(model, recipe, train_images, val_images, len(data.labels),
                                                          seed, log)
    else:
        trained = model
        train_ds = training_dataset(train_images, len(data.labels), recipe.batch_size, recipe.augmentation, seed)
        val_ds = evaluation_dataset(val_images, len(data.labels), max(recipe.batch_size, 64))
    loop = TrainingLoop(
        trained, recipe, policy, history, train_ds, val_ds, run_dir / runs.CHECKPOINT,
        LoopSettings(start_phase, options.epochs, options.time_budget_s, weights_for_classes),
        prompter, log, ScalarLog(run_dir / runs.TENSORBOARD), saved_model=model,
    )
    outcome = loop.run()
    if outcome.status == "interrupted":
        message = (f"training interrupted; best checkpoint {run_dir / runs.CHECKPOINT} (export it with "
                   f"`tagteller export --domain {domain.name} --checkpoint {run_dir / runs.CHECKPOINT}`)")
        return TrainResult(run_id, run_dir, "interrupted", ExitCode.INTERRUPTED, message)
    history.finish("finished")
    _draw_curves(run_dir, log)

    best_model = load_checkpoint(run_dir / runs.CHECKPOINT)
    training = training_summary(history.data, recipe, weights_text, data, options.command_line)
    rng = np.random.default_rng(seed)
    calibration = train_images.images[rng.permutation(len(train_images))[:INT8_CALIBRATION_IMAGES]]
    gate_data = open_set_data(val_images.labels, train_images.images, options.unknown_data, recipe, seed, log,
                              options.workers)
    exported = export_model(best_model, run_dir / runs.MODEL, domain.name, data.labels, recipe, training, run_id,
                            val_images.images, val_samples, options.quantize, calibration, log, open_set=gate_data)
    metrics = {**exported.metrics, "run_id": run_id, "model": str(exported.candidate)}
    target = Path(options.install_to) if options.install_to else installed_model_path(domain.name)
    if not exported.parity.passed:
        metrics["install"] = {"install": False, "reason": "parity check failed", "target": str(target)}
        _write_metrics(run_dir, metrics, history)
        return TrainResult(run_id, run_dir, "refused", ExitCode.FAILED,
                           f"not installed: the ONNX model does not match Keras ({exported.parity.describe()})",
                           exported.model_path, None, metrics)
    current = target if target.is_file() else None
    if current is None and options.install_to is None and domain.model_path is not None and domain.model_path.is_file():
        current = domain.model_path  # the shipped model is what `scan` uses now
    decision = decide_install(exported.measurement, current, val_samples, options.force)
    metrics["install"] = {**decision.as_dict(), "target": str(target)}
    if decision.install:
        install_model(exported.candidate, target)
        message = f"installed {target} ({decision.reason})"
        outcome_name, installed = "installed", target
    else:
        message = f"kept the model in use: {decision.reason}; the new one is {exported.candidate}"
        outcome_name, installed = "kept", None
    _write_metrics(run_dir, metrics, history)
    return TrainResult(run_id, run_dir, outcome_name, ExitCode.OK, message, exported.candidate, installed, metrics)


def _cached_prefix_inputs(model: Any, recipe: Recipe, train_images: Any, val_images: Any, num_classes: int,
                          seed: int, log: Log) -> tuple[Any, Any, Any]:
    """The suffix to train and its cached-feature datasets (see :mod:`~tagteller.train.prefix_cache`)."""
    import time

    from tagteller.train import prefix_cache

    if recipe.backbone == "cnn":
        raise TagtellerError("cached_views needs a pretrained backbone (the custom cnn trains all of itself)")
    first = prefix_cache.split_layer(model, recipe)
    prefix = prefix_cache.build_prefix(model, first)
    started = time.monotonic()
    views = recipe.cached_views
    train_features = prefix_cache.cache_features(prefix, train_images.images, views, recipe.augmentation, seed)
    val_features = prefix_cache.cache_features(prefix, val_images.images, 1, recipe.augmentation, seed)[0]
    log(f"cached the frozen layers' output (up to {first or 'the head'}) for {views} view(s) of "
        f"{len(train_images)} training and {len(val_images)} validation images in {time.monotonic() - started:.0f} s")
    suffix = prefix_cache.build_suffix(model, first)
    return (suffix,
            prefix_cache.feature_dataset(train_features, train_images.labels, num_classes, recipe.batch_size, seed),
            prefix_cache.evaluation_features(val_features, val_images.labels, num_classes, max(recipe.batch_size, 64)))


def _write_metrics(run_dir: Path, metrics: dict[str, Any], history: runs.RunHistory) -> None:
    metrics["wall_time_s"] = round(history.elapsed(), 3)
    atomic_write_text(run_dir / runs.METRICS, json.dumps(metrics, indent=1) + "\n")
    history.save()


def _draw_curves(run_dir: Path, log: Log) -> None:
    """``curves.png`` and ``summary.json`` in the run folder, when the report module can draw."""
    if importlib.util.find_spec("matplotlib") is None or importlib.util.find_spec("tagteller.evaluate.report") is None:
        return
    from tagteller.evaluate.report import write_training_report

    try:
        write_training_report(run_dir)
    except TagtellerError as exc:
        log(f"warning: training curves not drawn: {exc}")


# -- export of a saved checkpoint -------------------------------------------------------------

def latest_checkpoint(domain: str) -> Path:
    try:
        run_dir = runs.latest_run(domain)
    except TagtellerError as exc:
        raise TagtellerError(f"{exc}; pass --checkpoint FILE.keras") from None
    path = run_dir / runs.CHECKPOINT
    if not path.is_file():
        raise TagtellerError(f"{path}: the latest run has no checkpoint; pass --checkpoint FILE.keras")
    return path


def export_checkpoint(domain: Domain, checkpoint: Path | None, output: Path | None, quantize: str | None,
                      data: Path | None, log: Log = _stderr, unknown_data: Sequence[str] = ()) -> Exported:
    """``tagteller export``: a saved checkpoint to a self-describing ONNX model.

    Labels, input size and preprocessing come from the run's ``history.json`` beside the
    checkpoint when there is one, else from the domain. With ``data``, parity is checked on the
    validation images, the model is measured on them, calibrated and given its open-set score
    (negatives: ``unknown_data`` and generated images), and int8 is possible; without, parity is
    checked on random pixels and the metrics are the training history's.
    """
    from tagteller.preprocessing import Preprocessing
    from tagteller.train.export import INT8_CALIBRATION_IMAGES
    from tagteller.train.model import load_checkpoint
    from tagteller.sample_decoding import decode_samples

    if quantize not in QUANTIZE_CHOICES:
        raise TagtellerError(f"--quantize {quantize!r}: 'int8' or 'fp16'")
    checkpoint = Path(checkpoint) if checkpoint else latest_checkpoint(domain.name)
    model = load_checkpoint(checkpoint)
    recipe, labels, history = domain.recipe, tuple(domain.labels), {}
    history_path = checkpoint.parent / runs.HISTORY
    if history_path.is_file():
        history = runs.read_history(history_path)
        labels = tuple(history.get("labels") or labels)
        saved = history.get("recipe") or {}
        if saved.get("preprocessing") and saved.get("input_size"):
            recipe = recipe.with_(preprocessing=Preprocessing.from_dict(saved["preprocessing"]),
                                  input_size=tuple(saved["input_size"]), backbone=saved.get("backbone", recipe.backbone))
    outputs = model.output_shape[-1]
    if outputs != len(labels):
        raise TagtellerError(f"{checkpoint}: the model has {outputs} outputs but there are {len(labels)} labels")
    shape = tuple(model.input_shape[1:])
    want = (*recipe.input_size, recipe.preprocessing.channels)
    if shape != want:
        raise TagtellerError(f"{checkpoint}: the model takes {shape}, the recipe says {want}")
    output = Path(output) if output else (checkpoint.parent / runs.MODEL if history else checkpoint.with_suffix(".onnx"))
    val_images: np.ndarray
    val_samples: list[Sample] = []
    calibration = None
    gate_data = None
    if data is not None:
        prepared = prepare_data(domain, data, recipe, use_feedback=False, log=log)
        if tuple(prepared.labels) != labels:
            raise TagtellerError(f"{data}: labels {', '.join(prepared.labels)} differ from the model's {', '.join(labels)}")
        index = {label: i for i, label in enumerate(labels)}
        decoded = decode_samples(prepared.val, index, recipe.input_size, recipe.preprocessing)
        val_images = decoded.images
        failed = {k for k, _ in decoded.failures}
        val_samples = [s for s in prepared.val if s.key not in failed]
        # A random sample (the samples are sorted by key, hence by label) stands for the training
        # side: int8 calibration and the open-set gate's own images.
        rng = np.random.default_rng(recipe.seed)
        picked = [prepared.train[i] for i in rng.permutation(len(prepared.train))[:GATE_OWN_IMAGES]]
        own = decode_samples(picked, index, recipe.input_size, recipe.preprocessing).images
        if quantize:
            calibration = own[:INT8_CALIBRATION_IMAGES]
        gate_data = open_set_data(decoded.labels, own, unknown_data, recipe, recipe.seed, log)
    else:
        log("no --data: parity is checked on random pixels, and the metrics are the training history's")
        val_images = np.random.default_rng(0).uniform(0, 255, (32, *want)).astype(np.float32)
    best = history.get("best") or {}
    fallback = {"val_accuracy": best.get("val_accuracy"), "source": "training history (Keras)"} if best else {}
    training = training_summary(history, recipe, "checkpoint", None, "") if history else {"checkpoint": str(checkpoint)}
    version = str(history.get("run_id") or checkpoint.stem)
    return export_model(model, output, domain.name, labels, recipe, training, version, val_images, val_samples,
                        quantize, calibration, log, fallback_metrics=fallback, open_set=gate_data)
