"""Calibration and the open-set score, added to an exported ONNX classifier.

Works on the ONNX graph, not on Keras, so any tagteller model can get it, including one whose
Keras checkpoint is gone (``scripts/add_open_set.py``). :func:`add_open_set`:

1. finds the classifier's head(s): each ``Softmax`` that feeds ``probabilities`` (one, or two
   averaged for a model with ``test_time_flip``), its logits, and the penultimate features the
   last ``MatMul``/``Gemm`` reads (averaged over the branches);
2. runs the model with those tensors exposed on the validation images, the domain's training
   images and the unknown images (other folders, when given, and generated ones:
   :func:`tagteller.openset.synthetic_unknowns`);
3. fits the temperature on the validation split (ECE before, and after as cross-fitted halves),
   or takes the one it is given (the recipe's, fitted over repeated splits by
   ``scripts/crossval.py``: on a split of a few dozen images the model's own fit is noisy; ECE
   after is then measured on the whole split, which that temperature never saw); and fits the
   gate (:func:`tagteller.openset.fit_gate`) on training against unknown images;
4. rewrites the graph: ``Softmax(log(p) / T)`` on the network's probabilities ``p`` (for one
   head exactly ``Softmax(logits / T)``); ``embedding`` = the L2-normalised features;
   ``ood_score`` = ``Sigmoid(embedding @ w + b)``, the gate's probability that the image is
   not of this domain; and chooses the threshold for at most 5% false rejection on the
   validation split (:func:`choose_threshold`, run again on an int8 copy with its own scores).

The metadata objects it returns are what :class:`~tagteller.modelfile.ModelInfo` stores as
``calibration`` and ``open_set``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tagteller import openset
from tagteller.errors import TagtellerError
from tagteller.evaluate import metrics

OOD_OUTPUT = "ood_score"
EMBEDDING_OUTPUT = "embedding"
PROBABILITIES = "probabilities"
SYNTHETIC_TRAIN, SYNTHETIC_HELDOUT = 500, 250
#: The nodes :func:`rewrite` adds (the network's own may be named ``tagteller_...`` too: a Keras
#: model's name prefixes its layers); :func:`strip_open_set` removes them.
ADDED_NODES = frozenset({
    "tagteller_floor", "tagteller_log", "tagteller_temperature_scaling", "tagteller_calibrated_softmax",
    "tagteller_features_sum", "tagteller_features_mean", "tagteller_embedding", "tagteller_gate",
    "tagteller_gate_bias", "tagteller_gate_sigmoid", "tagteller_ood_score",
})
UNCALIBRATED = "tagteller_uncalibrated_probabilities"
SCORE_TEXT = ("logistic gate on the L2-normalised penultimate features: the domain's training images "
              "against unknown ones (other domains' training images and generated noise, flat, gradient "
              "and stripe images); ood_score is its probability that the image is not of this domain")


@dataclass(frozen=True)
class Head:
    softmax: str  # node name
    logits: str
    features: str


def _producers(graph: Any) -> dict[str, Any]:
    return {out: node for node in graph.node for out in node.output}


def probabilities_output(proto: Any) -> str:
    """``probabilities``, or the graph's first output when none has that name."""
    names = [o.name for o in proto.graph.output]
    if not names:
        raise TagtellerError("model has no outputs")
    return PROBABILITIES if PROBABILITIES in names else names[0]


QDQ = ("QuantizeLinear", "DequantizeLinear")


def _past_quantization(producers: dict[str, Any], name: str) -> Any:
    """The node that makes tensor ``name``, looking through quantize/dequantize nodes."""
    node = producers.get(name)
    while node is not None and node.op_type in QDQ:
        node = producers.get(node.input[0])
    return node


def find_heads(proto: Any) -> list[Head]:
    """Each softmax that makes ``probabilities``, with its logits and penultimate features."""
    graph = proto.graph
    producers = _producers(graph)
    if OOD_OUTPUT in {o.name for o in graph.output}:
        raise TagtellerError(f"model already has an {OOD_OUTPUT!r} output")
    heads: list[Head] = []
    stack, seen = [probabilities_output(proto)], set()
    while stack:
        name = stack.pop()
        node = producers.get(name)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Softmax":
            logits = node.input[0]
            linear = _past_quantization(producers, logits)
            if linear is not None and linear.op_type == "Add":
                linear = _past_quantization(producers, linear.input[0]) or linear
            if linear is None or linear.op_type not in ("MatMul", "Gemm"):
                raise TagtellerError("cannot find the dense layer before the softmax")
            heads.append(Head(node.name, logits, linear.input[0]))
        elif node.op_type in ("Add", "Mul", "Identity", "Div", "Sum", "Mean"):
            stack.extend(node.input)
        elif node.op_type in QDQ:  # an int8 copy: look through its quantize/dequantize pairs
            stack.append(node.input[0])
    if not heads:
        raise TagtellerError("no Softmax feeds 'probabilities'")
    heads.sort(key=lambda h: h.softmax)
    return heads


def with_outputs(proto: Any, names: Sequence[str]) -> Any:
    """A copy of ``proto`` that also outputs the tensors ``names``."""
    from onnx import TensorProto, helper

    probe = copy.deepcopy(proto)
    have = {o.name for o in probe.graph.output}
    for name in names:
        if name not in have:
            probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
            have.add(name)
    return probe


def run(proto: Any, images: np.ndarray, names: Sequence[str], batch: int = 32) -> dict[str, np.ndarray]:
    """The named outputs of ``proto`` for ``images`` (float pixels), batched."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, len(images), batch):
        values = session.run(list(names), {input_name: np.asarray(images[start:start + batch], np.float32)})
        for n, v in zip(names, values):
            parts[n].append(np.asarray(v, np.float32).reshape(len(values[0]), -1) if v.ndim != 1 else v)
    return {n: np.concatenate(v) if v else np.zeros((0,), np.float32) for n, v in parts.items()}


def features_and_logits(proto: Any, heads: list[Head], images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The penultimate features (averaged over heads) and ``log`` of the network's probabilities
    (the logits up to a constant per image, for one head)."""
    output = probabilities_output(proto)
    names = list(dict.fromkeys([h.features for h in heads] + [output]))
    out = run(with_outputs(proto, names), images, names)
    features = np.mean([out[h.features] for h in heads], axis=0)
    return features, np.log(np.clip(out[output].astype(np.float64), 1e-30, None))


def rewrite(proto: Any, heads: list[Head], temperature: float, w: np.ndarray, b: float) -> Any:
    """``proto`` with ``Softmax(log(p) / T)``, an ``embedding`` and an ``ood_score`` output."""
    from onnx import TensorProto, helper, numpy_helper

    new = copy.deepcopy(proto)
    graph = new.graph
    graph.initializer.extend([
        numpy_helper.from_array(np.array(temperature, np.float32), "tagteller_temperature"),
        numpy_helper.from_array(np.array(1e-30, np.float32), "tagteller_tiny"),
    ])
    # probabilities = Softmax(Log(p) / T) on the network's own probabilities p: for one head that
    # is Softmax(logits / T); for an image and its mirror averaged it keeps the averaged answer's
    # order, so no top-1 answer changes.
    output = probabilities_output(new)
    raw = UNCALIBRATED
    for node in graph.node:
        node.output[:] = [raw if o == output else o for o in node.output]
        node.input[:] = [raw if i == output else i for i in node.input]
    graph.node.extend([
        helper.make_node("Max", [raw, "tagteller_tiny"], ["tagteller_p"], name="tagteller_floor"),
        helper.make_node("Log", ["tagteller_p"], ["tagteller_log_p"], name="tagteller_log"),
        helper.make_node("Div", ["tagteller_log_p", "tagteller_temperature"], ["tagteller_scaled"],
                         name="tagteller_temperature_scaling"),
        helper.make_node("Softmax", ["tagteller_scaled"], [output], axis=-1, name="tagteller_calibrated_softmax"),
    ])
    features = heads[0].features
    if len(heads) > 1:
        graph.initializer.append(numpy_helper.from_array(np.array(1.0 / len(heads), np.float32), "tagteller_branch_share"))
        graph.node.append(helper.make_node("Sum", [h.features for h in heads], ["tagteller_features_sum"],
                                           name="tagteller_features_sum"))
        graph.node.append(helper.make_node("Mul", ["tagteller_features_sum", "tagteller_branch_share"],
                                           ["tagteller_features"], name="tagteller_features_mean"))
        features = "tagteller_features"
    graph.initializer.extend([
        numpy_helper.from_array(np.asarray(w, np.float32).reshape(-1, 1), "tagteller_gate_w"),
        numpy_helper.from_array(np.array([b], np.float32), "tagteller_gate_b"),
        numpy_helper.from_array(np.array([1], np.int64), "tagteller_gate_axis"),
    ])
    graph.node.extend([
        helper.make_node("LpNormalization", [features], [EMBEDDING_OUTPUT], axis=1, p=2, name="tagteller_embedding"),
        helper.make_node("MatMul", [EMBEDDING_OUTPUT, "tagteller_gate_w"], ["tagteller_gate_z0"], name="tagteller_gate"),
        helper.make_node("Add", ["tagteller_gate_z0", "tagteller_gate_b"], ["tagteller_gate_z"], name="tagteller_gate_bias"),
        helper.make_node("Sigmoid", ["tagteller_gate_z"], ["tagteller_gate_p"], name="tagteller_gate_sigmoid"),
        helper.make_node("Squeeze", ["tagteller_gate_p", "tagteller_gate_axis"], [OOD_OUTPUT], name="tagteller_ood_score"),
    ])
    graph.output.extend([
        helper.make_tensor_value_info(OOD_OUTPUT, TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["N", int(np.asarray(w).size)]),
    ])
    _sort_topologically(graph)
    return new


def _sort_topologically(graph: Any) -> None:
    """Nodes in an order where each comes after what it reads (the appended ones moved up)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        progressed = False
        rest = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
                progressed = True
            else:
                rest.append(node)
        if not progressed:
            raise TagtellerError("open-set rewrite left a node whose inputs are never made")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def strip_open_set(proto: Any) -> Any:
    """The network alone: ``proto`` without what :func:`rewrite` added (calibration, embedding,
    gate), its ``probabilities`` the network's own again, so a better gate or temperature can be
    fitted to a shipped model without retraining it. Also for an int8 copy, whose quantizer may
    have wrapped the added nodes: whatever no longer feeds ``probabilities`` is dropped."""
    new = copy.deepcopy(proto)
    graph = new.graph
    if UNCALIBRATED not in {o for node in graph.node for o in node.output}:
        return new  # never rewritten
    output = probabilities_output(new)
    # drop the added nodes and everything computed from the network's own probabilities (in an
    # int8 copy that includes the quantize/dequantize pairs wrapped around the added nodes)
    downstream = {UNCALIBRATED}
    kept = []
    for node in graph.node:  # topological order: a node's inputs are made before it
        if node.name in ADDED_NODES or any(i in downstream for i in node.input):
            downstream.update(node.output)
        else:
            kept.append(node)
    for node in kept:
        node.output[:] = [output if o == UNCALIBRATED else o for o in node.output]
        node.input[:] = [output if i == UNCALIBRATED else i for i in node.input]
    # keep only what the probabilities output still needs
    producers = {o: n for n in kept for o in n.output}
    needed, stack, live = set(), [output], []
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producers.get(name)
        if node is not None:
            stack.extend(i for i in node.input if i)
    live = [n for n in kept if any(o in needed for o in n.output)]
    del graph.node[:]
    graph.node.extend(live)
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    outputs = [o for o in graph.output if o.name == output]
    del graph.output[:]
    graph.output.extend(outputs)
    infos = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    return new


def choose_threshold(proto: Any, val_images: np.ndarray, false_rejection: float = openset.FALSE_REJECTION) -> tuple[float, float]:
    """``(threshold, share of val_images it rejects)`` from the model's own ``ood_score``."""
    scores = run(proto, val_images, [OOD_OUTPUT])[OOD_OUTPUT]
    threshold = openset.threshold_for_false_rejection(scores, false_rejection)
    return threshold, float((scores > threshold).mean())


def synthetic(count: int, shape: tuple[int, int, int], preprocessing: Any, seed: int) -> tuple[np.ndarray, list[str]]:
    """Generated unknowns at the model's input ``shape``: put through the model's preprocessing
    from other sizes when it is known (:func:`tagteller.openset.prepared_synthetic_unknowns`),
    else drawn at the input size."""
    if preprocessing is not None:
        return openset.prepared_synthetic_unknowns(count, shape[:2], preprocessing, seed)
    return openset.synthetic_unknowns(count, *shape, seed=seed)


def rejection_of_synthetic(proto: Any, threshold: float, shape: tuple[int, int, int], seed: int,
                           preprocessing: Any = None) -> dict[str, float]:
    """The share of held-out generated images (a seed the gate never saw) answered unknown, per kind."""
    images, kinds = synthetic(SYNTHETIC_HELDOUT, shape, preprocessing, seed)
    scores = run(proto, images, [OOD_OUTPUT])[OOD_OUTPUT]
    kinds_arr = np.array(kinds)
    return {k: round(float((scores[kinds_arr == k] > threshold).mean()), 4) for k in dict.fromkeys(kinds)}


@dataclass
class OpenSetFit:
    proto: Any
    calibration: dict[str, Any]
    open_set: dict[str, Any]


def add_open_set(proto: Any, val_images: np.ndarray, val_labels: np.ndarray, own_images: np.ndarray,
                 unknown_images: np.ndarray, unknown_sources: dict[str, int], seed: int = 0,
                 preprocessing: Any = None, temperature: float | None = None) -> OpenSetFit:
    """Fit and add calibration and the open-set score (see the module docstring). With the
    model's ``preprocessing`` (a :class:`tagteller.preprocessing.Preprocessing`), the generated
    unknowns reach the gate as the engine would decode them. ``temperature``: use this one
    instead of fitting it on the validation split."""
    heads = find_heads(proto)
    height, width, channels = (int(d) for d in val_images.shape[1:])
    shape = (height, width, channels)
    generated, _ = synthetic(SYNTHETIC_TRAIN, shape, preprocessing, seed)
    negatives = np.concatenate([np.asarray(unknown_images, np.float32).reshape(-1, *shape), generated])
    val_features, val_logits_only = features_and_logits(proto, heads, val_images)
    own_features, _ = features_and_logits(proto, heads, own_images)
    unknown_features, _ = features_and_logits(proto, heads, negatives)
    labels = np.asarray(val_labels, int)
    val_logits = [val_logits_only]  # one branch: the model as it is
    ece_before = round(metrics.top1_calibration_error(openset.averaged_probabilities(val_logits), labels,
                                                      openset.ECE_BINS), 6)
    if temperature is None:
        temperature = openset.fit_temperature(val_logits, labels)
        calibration = {
            "temperature": round(temperature, 6), "ece_before": ece_before,
            "ece_after": round(openset.cross_fitted_ece(val_logits, labels, seed), 6),
            # what a perfectly calibrated model would score on halves this small (ECE is biased upwards)
            "ece_noise_floor": round(openset.cross_fitted_ece_floor(val_logits, labels, seed), 6),
            "ece_after_in_sample": round(metrics.top1_calibration_error(
                openset.averaged_probabilities(val_logits, temperature), labels, openset.ECE_BINS), 6),
            "method": "temperature scaling (NLL) on the validation split; ece_after: fitted on one half, measured on the other",
        }
    else:
        temperature = openset.check_temperature(temperature)
        scaled = openset.averaged_probabilities(val_logits, temperature)
        calibration = {
            "temperature": round(temperature, 6), "ece_before": ece_before,
            "ece_after": round(metrics.top1_calibration_error(scaled, labels, openset.ECE_BINS), 6),
            "ece_noise_floor": round(openset.ece_noise_floor(scaled.max(axis=1), seed=seed), 6),
            "temperature_fitted_here": round(openset.fit_temperature(val_logits, labels), 6),
            "method": "temperature given (not fitted on this split); ece_after: measured on the whole validation split",
        }
    calibration.update({"bins": openset.ECE_BINS, "images": int(len(labels))})
    w, b = openset.fit_gate(own_features, unknown_features)
    new = rewrite(proto, heads, temperature, w, b)
    threshold, rejected = choose_threshold(new, val_images)
    before = openset.averaged_probabilities(val_logits).argmax(1)
    name = probabilities_output(new)
    after = run(new, val_images, [name])[name].argmax(1)
    if not np.array_equal(before, after):
        raise TagtellerError("open-set rewrite changed a top-1 answer (it must not)")
    open_set = {
        "output": OOD_OUTPUT, "threshold": round(threshold, 6), "score": SCORE_TEXT,
        "val_false_rejection": round(rejected, 6), "target_false_rejection": openset.FALSE_REJECTION,
        "embedding_output": EMBEDDING_OUTPUT,
        "negatives": {**unknown_sources, "generated": SYNTHETIC_TRAIN},
        "generated_rejection": rejection_of_synthetic(new, threshold, shape, seed + 1, preprocessing),
    }
    del val_features
    return OpenSetFit(new, calibration, open_set)
