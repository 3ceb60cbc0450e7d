"""``tagteller train`` and ``tagteller export``, step by step.

:func:`train_domain`:

0. resolve the settings once (:func:`tagteller.training_config.resolve_train_config`: the
   command line beats the domain, the domain the defaults); the log, ``history.json`` and the
   model's training summary say where each came from;
1. read the dataset with the domain's layout; split it (:func:`tagteller.datasets.stratified_split`,
   always with the recipe's seed, so ``tagteller evaluate --split val`` sees the same held-out
   images); add feedback images (``tagteller.feedback``) to the training side only;
2. resume from the best earlier model of the domain that fits (same labels, backbone, input
   size, preprocessing) unless ``--fresh``; otherwise build a new model;
3. open a run folder (:mod:`~tagteller.runs`, :meth:`TrainingRun.open`); the steps from
   here on are :class:`TrainingRun`'s: decode the images;
4. run the phases (:mod:`~tagteller.train.loop`);
5. export ``best.keras`` to ``model.onnx``, check parity with Keras on the validation images,
   measure it with the engine, optionally quantize to int8; each model file is measured from
   memory and written once, with its figures in it;
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

from tagteller import runs
from tagteller.atomic import atomic_write_text
from tagteller.datasets import Dataset, Sample, stratified_split
from tagteller.domain import Domain, Recipe
from tagteller.errors import DatasetError, TagtellerError
from tagteller.evaluate.evaluate import keys_sha256
from tagteller.exitcodes import ExitCode
from tagteller.modelfile import ModelInfo
from tagteller.names import validate_labels
from tagteller.paths import installed_model_path, portable_paths
from tagteller.training_config import QUANTIZE_CHOICES, TrainConfig, TrainOptions, resolve_train_config
from tagteller.training_prompt import NeverAsk, Prompter

Log = Callable[[str], None]
#: At most this many skipped-file lines are printed; the rest are counted.
MAX_LISTED_PROBLEMS = 20


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


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
    settings = history.get("settings")
    if settings and "weights" in settings:  # as the command line, a shipped model names no path
        settings = {**settings, "weights": {**settings["weights"], "value": _file_name(settings["weights"]["value"])}}
    command_line = portable_paths(command_line) if command_line else command_line
    return {
        "run_id": history.get("run_id"),
        "backbone": recipe.backbone,
        "backbone_options": recipe.backbone_options,
        "weights": _file_name(weights),
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
        "settings": settings,
    }


def _file_name(weights: Any) -> Any:
    """An absolute weights path as its file name only; anything else as it is."""
    return Path(str(weights)).name if weights and Path(str(weights)).is_absolute() else weights


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
    training images, and unknown images with the count from each source; ``temperature``: a
    given one (``--temperature``), else it is fitted on the validation split."""

    val_labels: np.ndarray
    own_images: np.ndarray
    unknown_images: np.ndarray
    sources: dict[str, int]
    seed: int = 0
    temperature: float | None = None


#: At most this many training images stand for the domain in the open-set gate.
GATE_OWN_IMAGES = 1000


def open_set_data(val_labels: np.ndarray, train_images: np.ndarray, unknown_specs: Sequence[str], recipe: Recipe,
                  seed: int, log: Log, workers: int | None = None, temperature: float | None = None) -> OpenSetData:
    from tagteller.unknown_data import load_unknowns

    unknown, sources = load_unknowns(unknown_specs, recipe.input_size, recipe.preprocessing, seed, log, workers)
    if sources:
        log("open-set negatives: " + ", ".join(f"{n} {c}" for n, c in sources.items()) + " image(s), plus generated ones")
    else:
        log("open-set negatives: generated images only (--unknown-data DIR teaches the gate real other things)")
    own = train_images[np.random.default_rng(seed).permutation(len(train_images))[:GATE_OWN_IMAGES]]
    return OpenSetData(np.asarray(val_labels), own, unknown, sources, seed, temperature)


@dataclass
class _Measured:
    """A model not yet written, with the metadata it will be written with and its figures."""

    proto: Any
    info: ModelInfo
    path: Path
    measurement: Any


def _measure_unwritten(proto: Any, info: ModelInfo, path: Path, samples: Sequence[Sample], engine: Any) -> tuple[Any, int]:
    """Measure ``proto`` (carrying ``info``) with the engine from memory, as if it were the file
    at ``path``: the figures go into its metadata before it is written, once. Also returns the
    size the file would have with ``info``."""
    from tagteller.evaluate.measure import measure_model
    from tagteller.modelfile import embed_metadata

    data = embed_metadata(proto, info).SerializeToString()
    return measure_model(engine.open_bytes(data, path), samples, engine), len(data)


def _smaller_copy(kind: str, proto: Any, info: ModelInfo, output: Path, float_size: int, val_images: np.ndarray,
                  val_samples: Sequence[Sample], calibration_images: np.ndarray | None, measurement: Any,
                  metrics: dict[str, Any], engine: Any, log: Log) -> _Measured | None:
    """An ``int8`` (static QDQ) or ``fp16`` (float16-stored weights) copy of ``proto``, to be
    written beside ``output``, with its own open-set threshold, measured; kept (returned, with
    its figures in ``metrics[kind]``) when validation top-1 drops by at most
    :data:`~tagteller.train.export.INT8_MAX_DROP`, else None."""
    from tagteller.train.export import INT8_CALIBRATION_IMAGES, INT8_MAX_DROP, half_precision_weights, quantize_int8

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
    m, size = _measure_unwritten(small, small_info, path, val_samples, engine)
    drop = measurement.accuracy - m.accuracy
    kept = drop <= INT8_MAX_DROP + 1e-12
    figures = {"val_accuracy": round(m.accuracy, 6), "macro_f1": round(m.macro_f1, 6),
               "size_bytes": size, "float_size_bytes": float_size,
               "accuracy_drop": round(drop, 6), "kept": kept}
    metrics[kind] = figures
    log(f"{kind}: accuracy {m.accuracy:.4f} (float {measurement.accuracy:.4f}), "
        f"{figures['size_bytes'] / 1e6:.2f} MB vs {figures['float_size_bytes'] / 1e6:.2f} MB: "
        f"{'kept' if kept else 'dropped (more than 1 point lost)'}")
    if not kept:
        path.unlink(missing_ok=True)  # a copy an earlier export left there
        return None
    small_metrics = {**m.as_metrics(), "quantization": method, "parity": metrics["parity"],
                     "float": {"val_accuracy": metrics["val_accuracy"], "macro_f1": metrics["macro_f1"]},
                     **{k: metrics[k] for k in ("int8", "fp16") if k in metrics}}
    return _Measured(small, dataclasses.replace(small_info, metrics=small_metrics), path, m)


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
    for ``keras_model``; measured on ``val_samples`` with the engine when there are any.

    Each file is written once, complete: the models are measured from memory first, so their
    figures are in the metadata they are written with."""
    from tagteller.engine import Engine
    from tagteller.train.export import parity_check, to_onnx, write_model_file

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
                           open_set.unknown_images, open_set.sources, open_set.seed, recipe.preprocessing,
                           temperature=open_set.temperature)
        proto = fit.proto
        info = dataclasses.replace(info, open_set=fit.open_set, calibration=fit.calibration,
                                   class_references=class_references_of(proto, val_images, open_set, labels, log))
        how = "cross-fitted" if open_set.temperature is None else "temperature given, on the whole split"
        log(f"calibrated: temperature {fit.calibration['temperature']:.3f}, ECE {fit.calibration['ece_before']:.3f} -> "
            f"{fit.calibration['ece_after']:.3f} ({how}); open-set threshold {fit.open_set['threshold']:.4f} "
            f"rejects {fit.open_set['val_false_rejection']:.1%} of the validation images and "
            + ", ".join(f"{v:.0%} of {k}" for k, v in fit.open_set["generated_rejection"].items()) + " (generated)")
    measurement = None
    metrics = dict(fallback_metrics or {})
    engine = Engine() if val_samples else None
    float_size = 0
    if engine is not None:
        measurement, float_size = _measure_unwritten(proto, info, output, val_samples, engine)
        metrics = measurement.as_metrics()
        if measurement.failures:
            metrics["val_failures"] = len(measurement.failures)
        log(f"ONNX model on {measurement.count} validation images: accuracy {measurement.accuracy:.4f}, "
            f"macro-F1 {measurement.macro_f1:.4f}")
    metrics["parity"] = parity.as_dict()
    smaller = None
    if quantize in ("int8", "fp16") and parity.passed and measurement is not None:
        tries = ["int8", "fp16"] if quantize == "int8" else ["fp16"]
        for kind in tries:
            if kind == "int8" and calibration_images is None:
                log("warning: int8 quantization skipped (it needs calibration images: --data DIR)")
                continue
            smaller = _smaller_copy(kind, proto, info, output, float_size, val_images, val_samples,
                                    calibration_images, measurement, metrics, engine, log)
            if smaller is not None:
                measurement = smaller.measurement
                break
    elif quantize is not None:
        log(f"warning: --quantize {quantize} skipped (it needs a passed parity check and the data: --data DIR)")
    if engine is not None:
        engine.close()
    write_model_file(proto, dataclasses.replace(info, metrics=metrics), output)
    if smaller is not None:
        write_model_file(smaller.proto, smaller.info, smaller.path)
    return Exported(output, parity, metrics, measurement, smaller.path if smaller else output)


# -- train ------------------------------------------------------------------------------------

def train_domain(domain: Domain, options: TrainOptions, prompter: Prompter | None = None,
                 log: Log = _stderr) -> TrainResult:
    """The whole ``tagteller train`` (see the module docstring)."""
    import keras

    config = resolve_train_config(domain, options)
    log(config.describe())
    data = prepare_data(domain, config.data, config.recipe, config.use_feedback, log, use_taught=config.use_taught)
    keras.utils.set_random_seed(config.seed)
    start = _start_model(domain.name, config.recipe, data.labels, config.fresh, log)
    run = TrainingRun.open(domain, config, data, prompter or NeverAsk(), log)
    try:
        return run.execute(start)
    except BaseException as exc:
        run.history.abandon(f"{exc.__class__.__name__}: {exc}")
        raise


@dataclass
class StartingModel:
    """What training starts from: a new model, or the best earlier run's (``resumed``)."""

    model: Any
    resumed: runs.EarlierRun | None
    weights_text: str  # how the starting weights are described in the training summary


def _start_model(domain: str, recipe: Recipe, labels: tuple[str, ...], fresh: bool, log: Log) -> StartingModel:
    """The best earlier model that fits (unless ``fresh``), else a new one from the recipe."""
    from tagteller.train.backbones import resolve_weights
    from tagteller.train.model import build_classifier, load_checkpoint

    if not fresh:
        candidates, notes = runs.resume_candidates(domain, labels, recipe)
        for note in notes:
            log(note)
        for run in candidates:
            try:
                return StartingModel(load_checkpoint(run.checkpoint), run, f"resumed from run {run.run_id}")
            except TagtellerError as exc:
                log(f"warning: {exc}; trying an older run")
    weights = resolve_weights(recipe.weights, recipe.backbone, recipe.backbone_options, recipe.input_size)
    log(f"building {recipe.backbone} (weights: {weights.describe()})")
    return StartingModel(build_classifier(recipe, len(labels), weights), None, weights.describe())


@dataclass
class DecodedSplit:
    """The decoded images of both sides, and the validation samples that decoded."""

    train: Any
    val: Any
    val_samples: list[Sample]


@dataclass
class TrainingRun:
    """One training run once its folder exists: its config, data, folder and history, and how it
    logs and asks. :meth:`execute` runs the steps after the folder: decode, train, export, install."""

    domain: Domain
    config: TrainConfig
    data: PreparedData
    run_id: str
    run_dir: Path
    history: runs.RunHistory
    prompter: Prompter
    log: Log

    @classmethod
    def open(cls, domain: Domain, config: TrainConfig, data: PreparedData, prompter: Prompter,
             log: Log) -> TrainingRun:
        """A new run folder with its ``history.json``, which records the settings and their sources."""
        run_id, run_dir = runs.new_run_dir(domain.name)
        history = runs.RunHistory(run_dir, {
            "domain": domain.name, "run_id": run_id, "recipe": runs.recipe_json(config.recipe),
            "stopping": config.policy.describe(), "labels": list(data.labels), "data_fingerprint": data.fingerprint,
            "val_keys_sha256": data.val_keys_sha256, "data_root": str(config.data.resolve()),
            "command_line": config.command_line, "seed": config.seed, "settings": config.settings(),
        })
        log(f"run {run_id}: {run_dir}")
        return cls(domain, config, data, run_id, run_dir, history, prompter, log)

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / runs.CHECKPOINT

    def execute(self, start: StartingModel) -> TrainResult:
        """Decode, train, export, install."""
        from tagteller.train.model import load_checkpoint

        images = self.decode()
        start_phase = self.resume_phase(start, images)
        if self.fit(start.model, start_phase, images) == "interrupted":
            message = (f"training interrupted; best checkpoint {self.checkpoint} (export it with "
                       f"`tagteller export --domain {self.domain.name} --checkpoint {self.checkpoint}`)")
            return TrainResult(self.run_id, self.run_dir, "interrupted", ExitCode.INTERRUPTED, message)
        self.history.finish("finished")
        _draw_curves(self.run_dir, self.log)
        exported = self.export(load_checkpoint(self.checkpoint), images, start.weights_text)
        return self.install(exported, images.val_samples)

    def decode(self) -> DecodedSplit:
        """Decode both sides; record the counts in the history."""
        from tagteller.sample_decoding import decode_samples

        data, recipe, log = self.data, self.config.recipe, self.log
        label_index = {label: i for i, label in enumerate(data.labels)}
        log(f"decoding {len(data.train)} training and {len(data.val)} validation images at "
            f"{recipe.input_size[0]}x{recipe.input_size[1]} {recipe.preprocessing.color_mode}")
        train_images = decode_samples(data.train, label_index, recipe.input_size, recipe.preprocessing,
                                      self.config.workers)
        val_images = decode_samples(data.val, label_index, recipe.input_size, recipe.preprocessing, self.config.workers)
        root = data.dataset.root
        _list_problems(root, train_images.failures + val_images.failures, "skipped (unreadable)", log)
        if len(train_images) == 0 or len(val_images) == 0:
            raise DatasetError(f"{root}: no readable images on the {'training' if not len(train_images) else 'validation'} side")
        self.history.data["counts"] = {
            "train": len(train_images), "val": len(val_images), "feedback": data.feedback_count,
            "skipped": len(data.skipped), "unreadable": len(train_images.failures) + len(val_images.failures),
            "per_label_train": {label: int(n) for label, n in zip(data.labels, train_images.counts(len(data.labels)))},
        }
        self.history.save()
        failed = {k for k, _ in val_images.failures}
        return DecodedSplit(train_images, val_images, [s for s in data.val if s.key not in failed])

    def resume_phase(self, start: StartingModel, images: DecodedSplit) -> int:
        """The phase to start in: 0, or (resuming) the earlier run's last, after measuring the
        earlier model on this split."""
        from tagteller.train.model import predict_probabilities

        resumed = start.resumed
        if resumed is None:
            return 0
        start_phase = min(resumed.last_phase, len(self.config.recipe.phases) - 1)
        predicted = predict_probabilities(start.model, images.val.images).argmax(1)
        accuracy = float((predicted == images.val.labels).mean())
        self.history.data["resumed_from"] = {"run_id": resumed.run_id, "checkpoint": str(resumed.checkpoint),
                                             "val_accuracy_before": round(accuracy, 6), "start_phase": start_phase}
        self.log(f"resuming from run {resumed.run_id} (its best val accuracy {resumed.best_val_accuracy:.4f}; "
                 f"{accuracy:.4f} on this split), phase {start_phase}; --fresh starts over")
        return start_phase

    def fit(self, model: Any, start_phase: int, images: DecodedSplit) -> str:
        """Run the phases (:mod:`~tagteller.train.loop`); the loop's status."""
        from tagteller.train.loop import ScalarLog, TrainingLoop
        from tagteller.train.pipeline import class_weights, evaluation_dataset, training_dataset

        recipe, labels, seed = self.config.recipe, self.data.labels, self.config.seed
        weights_for_classes = class_weights(images.train.labels, len(labels), recipe.class_weights)
        if weights_for_classes:
            self.log("classes are imbalanced: class weights " +
                     ", ".join(f"{labels[i]} {w:.2f}" for i, w in weights_for_classes.items()))
        if recipe.cached_views:
            trained, train_ds, val_ds = _cached_prefix_inputs(model, recipe, images.train, images.val, len(labels),
                                                              seed, self.log)
        else:
            trained = model
            train_ds = training_dataset(images.train, len(labels), recipe.batch_size, recipe.augmentation, seed)
            val_ds = evaluation_dataset(images.val, len(labels), max(recipe.batch_size, 64))
        loop = TrainingLoop(trained, self.config, self.history, train_ds, val_ds, self.checkpoint, self.prompter,
                            self.log, start_phase=start_phase, class_weight=weights_for_classes,
                            scalars=ScalarLog(self.run_dir / runs.TENSORBOARD), saved_model=model)
        return loop.run().status

    def export(self, best_model: Any, images: DecodedSplit, weights_text: str) -> Exported:
        """``best.keras`` to ``model.onnx`` (and a smaller copy with ``--quantize``)."""
        from tagteller.train.export import INT8_CALIBRATION_IMAGES

        config = self.config
        training = training_summary(self.history.data, config.recipe, weights_text, self.data, config.command_line)
        rng = np.random.default_rng(config.seed)
        calibration = images.train.images[rng.permutation(len(images.train))[:INT8_CALIBRATION_IMAGES]]
        gate_data = open_set_data(images.val.labels, images.train.images, config.unknown_data, config.recipe,
                                  config.seed, self.log, config.workers, config.temperature)
        return export_model(best_model, self.run_dir / runs.MODEL, self.domain.name, self.data.labels, config.recipe,
                            training, self.run_id, images.val.images, images.val_samples, config.quantize,
                            calibration, self.log, open_set=gate_data)

    def install(self, exported: Exported, val_samples: Sequence[Sample]) -> TrainResult:
        """Install the exported model when it passed parity and beats the one in use (or ``--force``)."""
        from tagteller.install import decide_install, install_model

        config, domain = self.config, self.domain
        metrics = {**exported.metrics, "run_id": self.run_id, "model": str(exported.candidate)}
        target = config.install_to or installed_model_path(domain.name)
        if not exported.parity.passed:
            metrics["install"] = {"install": False, "reason": "parity check failed", "target": str(target)}
            _write_metrics(self.run_dir, metrics, self.history)
            return TrainResult(self.run_id, self.run_dir, "refused", ExitCode.FAILED,
                               f"not installed: the ONNX model does not match Keras ({exported.parity.describe()})",
                               exported.model_path, None, metrics)
        current = target if target.is_file() else None
        if current is None and config.install_to is None and domain.model_path is not None and domain.model_path.is_file():
            current = domain.model_path  # the shipped model is what `scan` uses now
        decision = decide_install(exported.measurement, current, val_samples, config.force)
        metrics["install"] = {**decision.as_dict(), "target": str(target)}
        if decision.install:
            install_model(exported.candidate, target)
            message = f"installed {target} ({decision.reason})"
            outcome_name, installed = "installed", target
        else:
            message = f"kept the model in use: {decision.reason}; the new one is {exported.candidate}"
            outcome_name, installed = "kept", None
        _write_metrics(self.run_dir, metrics, self.history)
        return TrainResult(self.run_id, self.run_dir, outcome_name, ExitCode.OK, message, exported.candidate, installed,
                           metrics)


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
                      data: Path | None, log: Log = _stderr, unknown_data: Sequence[str] = (),
                      temperature: float | None = None) -> Exported:
    """``tagteller export``: a saved checkpoint to a self-describing ONNX model.

    Labels, input size and preprocessing come from the run's ``history.json`` beside the
    checkpoint when there is one, else from the domain. With ``data``, parity is checked on the
    validation images, the model is measured on them, calibrated and given its open-set score
    (negatives: ``unknown_data`` and generated images; ``temperature``: a given one, else fitted),
    and int8 is possible; without, parity is
    checked on random pixels and the metrics are the training history's.
    """
    from tagteller.preprocessing import Preprocessing
    from tagteller.train.export import INT8_CALIBRATION_IMAGES
    from tagteller.train.model import load_checkpoint
    from tagteller.sample_decoding import decode_samples

    if quantize not in QUANTIZE_CHOICES:
        raise TagtellerError(f"--quantize {quantize!r}: 'int8' or 'fp16'")
    if temperature is not None:
        from tagteller.openset import check_temperature

        check_temperature(temperature, "--temperature")
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
        gate_data = open_set_data(decoded.labels, own, unknown_data, recipe, recipe.seed, log, temperature=temperature)
    else:
        log("no --data: parity is checked on random pixels, and the metrics are the training history's")
        val_images = np.random.default_rng(0).uniform(0, 255, (32, *want)).astype(np.float32)
    best = history.get("best") or {}
    fallback = {"val_accuracy": best.get("val_accuracy"), "source": "training history (Keras)"} if best else {}
    training = training_summary(history, recipe, "checkpoint", None, "") if history else {"checkpoint": str(checkpoint)}
    version = str(history.get("run_id") or checkpoint.stem)
    return export_model(model, output, domain.name, labels, recipe, training, version, val_images, val_samples,
                        quantize, calibration, log, fallback_metrics=fallback, open_set=gate_data)
