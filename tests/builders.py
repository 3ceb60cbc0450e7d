"""Tiny ONNX models and images built by the tests themselves (onnx.helper, Pillow; no tensorflow).

``colour_model`` averages each channel over the image and applies a linear layer + softmax, so
its answer is predictable: with the default weights a red image is "red", a green one "green"...
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

import tagteller
from tagteller.modelfile import ModelInfo, embed_metadata, save_model
from tagteller.preprocessing import Preprocessing

RGB_LABELS = ("red", "green", "blue")


def colour_graph(labels, size=(32, 32), channels=3, weights=None, output="probabilities",
                 out_classes=None) -> onnx.ModelProto:
    """NHWC float input -> mean over H, W -> (C) @ W + b -> softmax (or raw logits)."""
    h, w = size
    k = out_classes or len(labels)
    if weights is None:
        weights = np.zeros((channels, k), np.float32)
        for i in range(min(channels, k)):
            weights[i, i] = 0.1
        if channels == 1 and k >= 2:  # brightness: label 0 for light, 1 for dark
            weights[0, 0], weights[0, 1] = 0.05, -0.05
    bias = np.zeros((k,), np.float32)
    if channels == 1 and k >= 2:
        bias[1] = 12.75  # 0.05 * 255 / 2: dark below mid-grey
        bias[0] = -0.0
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
    ]
    out_name = "logits"
    if output == "probabilities":
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1))
        out_name = "probs"
    graph = helper.make_graph(
        nodes,
        "colour",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", h, w, channels])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", k])],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
            helper.make_tensor("W", TensorProto.FLOAT, list(weights.shape), weights.ravel().tolist()),
            helper.make_tensor("b", TensorProto.FLOAT, [k], bias.tolist()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def colour_model(path: Path, domain="colours", labels=RGB_LABELS, size=(32, 32), color_mode="RGB",
                 preprocessing: Preprocessing | None = None, output="probabilities", out_classes=None,
                 metrics=None, model_version="1", weights=None) -> Path:
    """Write a tagteller model file that classifies by mean colour; return its path."""
    pre = preprocessing or Preprocessing(color_mode=color_mode)
    channels = 3 if color_mode == "RGB" else 1
    model = colour_graph(labels, size, channels, weights=weights, output=output, out_classes=out_classes)
    info = ModelInfo(domain=domain, labels=tuple(labels), height=size[0], width=size[1], color_mode=color_mode,
                     preprocessing=pre, output=output, metrics=metrics or {"val_accuracy": 1.0},
                     model_version=model_version)
    embed_metadata(model, info)
    save_model(model, path)
    return path


def raw_model_with_metadata(path: Path, meta: dict[str, str], labels=RGB_LABELS) -> Path:
    """A colour graph carrying exactly ``meta`` (for malformed-metadata tests)."""
    model = colour_graph(labels)
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    path.write_bytes(model.SerializeToString())
    return path


def solid_image(path: Path, colour=(255, 0, 0), size=(64, 48), fmt=None, mode="RGB", **save) -> Path:
    from PIL import Image

    Image.new(mode, size, colour).save(path, format=fmt, **save)
    return path


class DomainsPlugin:
    """A plugin object that registers the domains it is given (a stand-in for a third-party
    plugin): ``tagteller.plugins.register_plugin(DomainsPlugin(domain, ...), "name")``."""

    def __init__(self, *domains) -> None:
        self.domains = domains

    @tagteller.hookimpl
    def register_domains(self, register):
        for domain in self.domains:
            register(domain)


def thrift_domains(model_path: Path | None) -> DomainsPlugin:
    """The price and feedback tests' domains: ``thrift-colours`` (a colour model, new labels
    allowed) and ``thrift-fixed`` (fixed labels, no model)."""
    from tagteller.domain import Domain

    return DomainsPlugin(
        Domain(name="thrift-colours", description="test colours", labels=RGB_LABELS,
               model_path=model_path, allow_new_labels=True, low_confidence=0.5),
        Domain(name="thrift-fixed", description="test, fixed labels", labels=("cat", "dog")),
    )


def register_thrift_domains(folder: Path) -> Path:
    """Build the thrift-colours model in ``folder``, register :func:`thrift_domains`; return the model."""
    from tagteller import plugins

    model = colour_model(folder / "colours.onnx", domain="thrift-colours")
    plugins.register_plugin(thrift_domains(model), name="thrift-test-domains")
    return model


def open_set_graph(labels, size=(32, 32), channels=3, prototype=(255.0, 0.0, 0.0), weights=None,
                   score_scale=1.0, embedding=True) -> onnx.ModelProto:
    """The exported-model contract in miniature. NHWC float input -> mean over H, W (the pooled
    colour) -> ``probabilities`` = softmax(pooled @ W); ``ood_score`` = the distance of the pooled
    colour from ``prototype`` (times ``score_scale``: NaN makes a broken score); and, with
    ``embedding``, an ``embedding`` output: the L2-normalised pooled colour."""
    h, w = size
    k = len(labels)
    if weights is None:
        weights = np.zeros((channels, k), np.float32)
        for i in range(min(channels, k)):
            weights[i, i] = 0.1
    weights = np.asarray(weights, np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        helper.make_node("Sub", ["pooled", "prototype"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["squared"]),
        helper.make_node("ReduceSum", ["squared", "channel_axis"], ["sum_squared"], keepdims=0),
        helper.make_node("Sqrt", ["sum_squared"], ["distance"]),
        helper.make_node("Mul", ["distance", "score_scale"], ["ood_score"]),
    ]
    outputs = [
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", k]),
        helper.make_tensor_value_info("ood_score", TensorProto.FLOAT, ["N"]),
    ]
    initializers = [
        helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
        helper.make_tensor("channel_axis", TensorProto.INT64, [1], [1]),
        helper.make_tensor("W", TensorProto.FLOAT, list(weights.shape), weights.ravel().tolist()),
        helper.make_tensor("prototype", TensorProto.FLOAT, [channels], [float(v) for v in prototype][:channels]),
        helper.make_tensor("score_scale", TensorProto.FLOAT, [], [float(score_scale)]),
    ]
    if embedding:
        nodes.append(helper.make_node("LpNormalization", ["pooled"], ["embedding"], axis=1, p=2))
        outputs.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", "D"]))
    graph = helper.make_graph(
        nodes, "open-set-colour",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", h, w, channels])],
        outputs, initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def open_set_model(path: Path, domain="fruit", labels=("apple", "lime", "blueberry"), threshold=120.0,
                   prototype=(255.0, 0.0, 0.0), size=(32, 32), model_version="1", open_set=None,
                   calibration=None, **graph) -> Path:
    """Write a tagteller model with an open-set score (see :func:`open_set_graph`): the image is
    ``unknown`` when its mean colour is more than ``threshold`` (in 0..255 units) from
    ``prototype``. ``open_set`` replaces the metadata's ``open_set`` object."""
    model = open_set_graph(labels, size, prototype=prototype, **graph)
    info = ModelInfo(
        domain=domain, labels=tuple(labels), height=size[0], width=size[1], color_mode="RGB",
        preprocessing=Preprocessing(), metrics={"val_accuracy": 1.0}, model_version=model_version,
        open_set=open_set if open_set is not None else {
            "output": "ood_score", "threshold": threshold, "score": "rgb-distance",
            "val_false_rejection": 0.0, "prototype": list(prototype)},
        calibration=calibration if calibration is not None else {
            "temperature": 1.5, "ece_before": 0.08, "ece_after": 0.02},
    )
    embed_metadata(model, info)
    save_model(model, path)
    return path
