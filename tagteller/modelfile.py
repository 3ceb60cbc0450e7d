"""The self-describing model file: what tagteller writes into ONNX ``metadata_props``.

Every value is a string; structured values are JSON and are parsed as data (``json.loads``),
never evaluated. A user with plain onnxruntime reads them with
``session.get_modelmeta().custom_metadata_map``:

=====================  ==============================================================
key                    value
=====================  ==============================================================
``tagteller_format``   format version of this schema (``"1"``)
``domain``             domain name
``labels``             JSON list of labels, in output order
``input``              JSON ``{"height", "width", "channels", "color_mode", "layout": "NHWC",
                       "dtype": "float32", "range": [0, 255]}``
``preprocessing``      JSON :class:`~tagteller.preprocessing.Preprocessing`
``output``             ``"probabilities"`` (softmax inside the graph) or ``"logits"``
``open_set``           optional JSON ``{"output": NAME, "threshold": NUMBER, "score": TEXT,
                       "val_false_rejection": NUMBER, ...}``: the graph output NAME (shape
                       ``(N,)``) is an open-set score, higher meaning less like the training
                       images; an image whose score is over ``threshold`` is ``unknown``.
                       ``output`` and ``threshold`` are required, the rest is descriptive and
                       extra keys are kept
``calibration``        optional JSON ``{"temperature": NUMBER, "ece_before": NUMBER,
                       "ece_after": NUMBER, ...}``: the temperature scaling already applied
                       inside the graph, and the expected calibration error it changed
                       (informational; extra keys are kept)
``class_references``   optional JSON: per-class prototypes of the validation embeddings and their
                       similarity statistics, against which taught labels are scored
                       (:func:`tagteller.taught.class_references`)
``metrics``            JSON validation metrics (accuracy, macro_f1, per-class recall, ...)
``training``           JSON summary (recipe, history, data fingerprint, wall time)
``model_version``      version string of this model
``created``            ISO 8601 UTC creation time
``tagteller_version``  tagteller version that wrote it
=====================  ==============================================================

Graph outputs are looked up by name: the probabilities are the output called ``probabilities``
(else the first output), the open-set score the output ``open_set["output"]`` names. Other
outputs (an ``embedding``, say) are allowed and not run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeGuard

from tagteller.errors import InvalidNameError, ModelError
from tagteller.names import validate_domain_name, validate_labels
from tagteller.preprocessing import Preprocessing

FORMAT_VERSION = "1"
SUPPORTED_FORMATS = {"1"}
REQUIRED_KEYS = ("tagteller_format", "domain", "labels", "input", "preprocessing")
#: Keys :meth:`ModelInfo.to_metadata` writes only when the model has them.
OPTIONAL_KEYS = ("open_set", "calibration", "class_references")


@dataclass(frozen=True)
class ModelInfo:
    """A model's parsed metadata (see the module docstring for the keys)."""

    domain: str
    labels: tuple[str, ...]
    height: int
    width: int
    color_mode: str
    preprocessing: Preprocessing
    output: str = "probabilities"
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    model_version: str = "0"
    created: str = ""
    tagteller_version: str = ""
    format_version: str = FORMAT_VERSION
    #: ``{"output", "threshold", "score", "val_false_rejection", ...}`` or None (no open-set score).
    open_set: dict[str, Any] | None = None
    #: ``{"temperature", "ece_before", "ece_after", ...}`` or None (not calibrated at export).
    calibration: dict[str, Any] | None = None
    #: Prototypes and similarity statistics for taught labels (:mod:`tagteller.taught`), or None.
    class_references: dict[str, Any] | None = None

    @property
    def channels(self) -> int:
        return 3 if self.color_mode == "RGB" else 1

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def ood_output(self) -> str | None:
        """The name of the graph output that holds the open-set score (None: the model has none)."""
        return self.open_set["output"] if self.open_set else None

    @property
    def ood_threshold(self) -> float | None:
        """Scores over this are ``unknown`` (None: the model has no open-set score)."""
        return float(self.open_set["threshold"]) if self.open_set else None

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` key/value strings for this info."""
        from tagteller import __version__

        optional = {key: json.dumps(value, sort_keys=True)
                    for key, value in zip(OPTIONAL_KEYS, (self.open_set, self.calibration, self.class_references))
                    if value is not None}
        return {
            "tagteller_format": self.format_version,
            "domain": self.domain,
            "labels": json.dumps(list(self.labels)),
            "input": json.dumps(
                {
                    "height": self.height,
                    "width": self.width,
                    "channels": self.channels,
                    "color_mode": self.color_mode,
                    "layout": "NHWC",
                    "dtype": "float32",
                    "range": [0, 255],
                }
            ),
            "preprocessing": self.preprocessing.to_json(),
            "output": self.output,
            **optional,
            "metrics": json.dumps(self.metrics, sort_keys=True),
            "training": json.dumps(self.training, sort_keys=True),
            "model_version": self.model_version,
            "created": self.created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tagteller_version": self.tagteller_version or __version__,
        }

    def as_dict(self) -> dict[str, Any]:
        """Decoded metadata, for ``tagteller info --json``."""
        meta = self.to_metadata()
        out: dict[str, Any] = {}
        for key, value in meta.items():
            try:
                out[key] = json.loads(value) if key in _JSON_KEYS else value
            except json.JSONDecodeError:
                out[key] = value
        return out


_JSON_KEYS = {"labels", "input", "preprocessing", "metrics", "training", "open_set", "calibration",
              "class_references"}


def _json(meta: dict[str, str], key: str, where: str, default: Any = None) -> Any:
    if key not in meta:
        if default is not None:
            return default
        raise ModelError(f"{where}: metadata key {key!r} is missing")
    try:
        return json.loads(meta[key])
    except (ValueError, RecursionError) as exc:  # ValueError: bad JSON, or an int over Python's digit limit
        raise ModelError(f"{where}: metadata {key!r} is not valid JSON ({exc.__class__.__name__})") from None


#: JSON types each preprocessing field must have (checked before the values are used).
_PREPROCESSING_TYPES: dict[str, tuple[type, ...]] = {
    "color_mode": (str,), "resize": (str,), "invert": (str,), "background": (str,),
    "trim": (bool,), "trim_threshold": (int,), "trim_margin": (int, float),
}


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_preprocessing(data: Any, where: str) -> Preprocessing:
    """Preprocessing from decoded JSON; a value of the wrong JSON type is refused, not coerced."""
    if isinstance(data, dict):
        for key, types in _PREPROCESSING_TYPES.items():
            if key not in data:
                continue
            value = data[key]
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                raise ModelError(f"{where}: preprocessing {key} must be {' or '.join(t.__name__ for t in types)}, "
                                 f"got {type(value).__name__}")
    try:
        return Preprocessing.from_dict(data)
    except ModelError as exc:
        raise ModelError(f"{where}: {exc}") from None


def _is_number(value: Any) -> bool:
    """A finite JSON number (not a boolean, not NaN or an infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_open_set(meta: dict[str, str], where: str) -> dict[str, Any] | None:
    """The ``open_set`` object, checked: a named output and a finite threshold."""
    if "open_set" not in meta:
        return None
    data = _json(meta, "open_set", where)
    if not isinstance(data, dict):
        raise ModelError(f"{where}: metadata 'open_set' must be a JSON object")
    output = data.get("output")
    if not isinstance(output, str) or not output:
        raise ModelError(f"{where}: metadata 'open_set' output must name a graph output (a non-empty string)")
    if not _is_number(data.get("threshold")):
        raise ModelError(f"{where}: metadata 'open_set' threshold must be a finite number")
    if "score" in data and not isinstance(data["score"], str):
        raise ModelError(f"{where}: metadata 'open_set' score must be a string describing the score")
    if "val_false_rejection" in data and not _is_number(data["val_false_rejection"]):
        raise ModelError(f"{where}: metadata 'open_set' val_false_rejection must be a finite number")
    return data


def _parse_calibration(meta: dict[str, str], where: str) -> dict[str, Any] | None:
    """The ``calibration`` object, checked: a positive temperature and numeric errors."""
    if "calibration" not in meta:
        return None
    data = _json(meta, "calibration", where)
    if not isinstance(data, dict):
        raise ModelError(f"{where}: metadata 'calibration' must be a JSON object")
    if "temperature" in data and not (_is_number(data["temperature"]) and data["temperature"] > 0):
        raise ModelError(f"{where}: metadata 'calibration' temperature must be a number more than 0")
    for key in ("ece_before", "ece_after"):
        if key in data and not _is_number(data[key]):
            raise ModelError(f"{where}: metadata 'calibration' {key} must be a finite number")
    return data


def parse_metadata(meta: dict[str, str], where: str = "model") -> ModelInfo:
    """Parse ``metadata_props`` into a :class:`ModelInfo`; raise :class:`ModelError` if unusable."""
    if not isinstance(meta, dict):
        raise ModelError(f"{where}: metadata is not a mapping")
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ModelError(f"{where}: metadata must map strings to strings ({key!r} does not)")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(
            f"{where}: not a tagteller model (metadata keys missing: {', '.join(missing)})"
        )
    fmt = meta["tagteller_format"]
    if fmt not in SUPPORTED_FORMATS:
        raise ModelError(f"{where}: metadata format {fmt!r} is not supported (this tagteller reads {sorted(SUPPORTED_FORMATS)})")
    raw_labels = _json(meta, "labels", where)
    if not isinstance(raw_labels, list):
        raise ModelError(f"{where}: metadata 'labels' must be a JSON list of names")
    try:
        domain = validate_domain_name(meta["domain"])
        labels = validate_labels(raw_labels)
    except InvalidNameError as exc:
        raise ModelError(f"{where}: {exc}") from None
    spec = _json(meta, "input", where)
    if not isinstance(spec, dict):
        raise ModelError(f"{where}: metadata 'input' must be a JSON object")
    height, width = spec.get("height"), spec.get("width")
    if not (_is_int(height) and _is_int(width)):
        raise ModelError(f"{where}: metadata 'input' lacks a whole-number height and width")
    if not (1 <= height <= 4096 and 1 <= width <= 4096):
        raise ModelError(f"{where}: input size {height}x{width} is out of range")
    color_mode = spec.get("color_mode", "RGB")
    if not isinstance(color_mode, str):
        raise ModelError(f"{where}: metadata 'input' color_mode must be a string")
    for key, expected in (("layout", "NHWC"), ("dtype", "float32"), ("range", [0, 255])):
        if key in spec and spec[key] != expected:
            raise ModelError(f"{where}: input {key} {spec[key]!r} is not supported (tagteller models take {expected!r})")
    pre = _parse_preprocessing(_json(meta, "preprocessing", where), where)
    if "channels" in spec and (not _is_int(spec["channels"]) or spec["channels"] != pre.channels):
        raise ModelError(f"{where}: input channels {spec['channels']!r} do not fit colour mode {pre.color_mode!r}")
    if pre.color_mode != color_mode:
        raise ModelError(f"{where}: input colour mode {color_mode!r} differs from preprocessing {pre.color_mode!r}")
    output = meta.get("output", "probabilities")
    if output not in ("probabilities", "logits"):
        raise ModelError(f"{where}: metadata 'output' must be 'probabilities' or 'logits'")
    metrics = _json(meta, "metrics", where, default={})
    training = _json(meta, "training", where, default={})
    if not isinstance(metrics, dict) or not isinstance(training, dict):
        raise ModelError(f"{where}: metadata 'metrics' and 'training' must be JSON objects")
    open_set = _parse_open_set(meta, where)
    calibration = _parse_calibration(meta, where)
    references = _json(meta, "class_references", where) if "class_references" in meta else None
    if references is not None and not isinstance(references, dict):
        raise ModelError(f"{where}: metadata 'class_references' must be a JSON object")
    return ModelInfo(
        domain=domain,
        labels=labels,
        height=height,
        width=width,
        color_mode=color_mode,
        preprocessing=pre,
        output=output,
        metrics=metrics,
        training=training,
        open_set=open_set,
        calibration=calibration,
        class_references=references,
        model_version=str(meta.get("model_version", "0")),
        created=str(meta.get("created", "")),
        tagteller_version=str(meta.get("tagteller_version", "")),
        format_version=fmt,
    )


def embed_metadata(model: Any, info: ModelInfo) -> Any:
    """Write ``info`` into an ``onnx.ModelProto``'s ``metadata_props`` (replacing earlier keys;
    an optional key ``info`` lacks, such as ``open_set``, is removed rather than left stale)."""
    meta = info.to_metadata()
    owned = set(meta) | set(OPTIONAL_KEYS)
    keep = [p for p in model.metadata_props if p.key not in owned]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    return model


def save_model(model: Any, path: str | Path) -> None:
    """Serialise an ``onnx.ModelProto`` to ``path`` atomically."""
    from tagteller.atomic import atomic_write_bytes

    atomic_write_bytes(path, model.SerializeToString())
