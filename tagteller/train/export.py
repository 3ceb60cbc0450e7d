"""Keras to ONNX, the parity check, the model file's metadata, and optional int8 quantization.

- :func:`to_onnx`: ``tf2onnx.convert.from_keras`` with an explicit input signature (float32
  NHWC pixels named ``image``, batch dimension ``N``), which is what works reliably on Keras 3.
- :func:`parity_check`: onnxruntime against Keras on real validation images; the model passes
  only with a max absolute difference in probabilities below :data:`PARITY_MAX_ABS_DIFF` and
  the same top-1 class for every image. Training refuses to install a model that fails.
- :func:`write_model_file`: embeds :class:`~tagteller.modelfile.ModelInfo` and saves atomically.
- :func:`quantize_int8`: static QDQ quantization with ``onnxruntime.quantization``, calibrated
  on training images. Training keeps it only when validation top-1 drops by at most
  :data:`INT8_MAX_DROP` (one point); both figures are reported.
- :func:`half_precision_weights`: the same network with its large weights stored as float16
  and cast back to float32 when the session opens (onnxruntime folds the casts), so the file is
  half the size and the arithmetic, speed and answers stay float32's (outputs move ~1e-3).
  Training falls back to it when int8 loses more than a point.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagteller.modelfile import ModelInfo, embed_metadata, save_model
from tagteller.train.model import INPUT_NAME, predict_probabilities

PARITY_MAX_ABS_DIFF = 1e-4
PARITY_MAX_IMAGES = 256
INT8_MAX_DROP = 0.01
INT8_CALIBRATION_IMAGES = 128
OPSET = 17


def to_onnx(model: Any, input_size: tuple[int, int], channels: int) -> Any:
    """Convert a Keras classifier to an ``onnx.ModelProto`` (input ``image``, output
    ``probabilities``)."""
    import tensorflow as tf
    import tf2onnx

    height, width = input_size
    signature = (tf.TensorSpec((None, height, width, channels), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET)
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "N"
    return proto


def _session(model_bytes: bytes) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class ParityReport:
    """How the ONNX model's probabilities compare with Keras' on the same images."""

    images: int
    max_abs_diff: float
    top1_agreement: float
    tolerance: float = PARITY_MAX_ABS_DIFF

    @property
    def passed(self) -> bool:
        return self.images > 0 and self.max_abs_diff < self.tolerance and self.top1_agreement == 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.images, "max_abs_diff": self.max_abs_diff, "top1_agreement": self.top1_agreement,
                "tolerance": self.tolerance, "passed": self.passed}

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (f"parity {verdict}: {self.images} images, max |onnx - keras| = {self.max_abs_diff:.2e} "
                f"(limit {self.tolerance:.0e}), top-1 agreement {self.top1_agreement * 100:.1f}%")


def parity_check(keras_model: Any, onnx_model: Any, images: np.ndarray,
                 tolerance: float | None = None) -> ParityReport:
    """Compare onnxruntime and Keras on up to :data:`PARITY_MAX_IMAGES` of ``images``."""
    images = np.asarray(images[:PARITY_MAX_IMAGES], dtype=np.float32)
    tolerance = PARITY_MAX_ABS_DIFF if tolerance is None else tolerance
    if len(images) == 0:
        return ParityReport(0, float("inf"), 0.0, tolerance)
    session = _session(onnx_model.SerializeToString())
    name = session.get_inputs()[0].name
    ours = np.concatenate([session.run(None, {name: images[i:i + 32]})[0] for i in range(0, len(images), 32)])
    theirs = predict_probabilities(keras_model, images, batch_size=32)
    diff = float(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)).max())
    agreement = float((ours.argmax(axis=1) == theirs.argmax(axis=1)).mean())
    return ParityReport(len(images), diff, agreement, tolerance)


def write_model_file(proto: Any, info: ModelInfo, path: str | os.PathLike[str]) -> Path:
    """Embed ``info`` in ``proto`` and save it atomically at ``path``."""
    embed_metadata(proto, info)
    save_model(proto, path)
    return Path(path)


class _Calibration:
    """Feeds calibration batches to onnxruntime's quantizer (a ``CalibrationDataReader``: that
    abstract class accepts any object with ``get_next``)."""

    def __init__(self, input_name: str, images: np.ndarray, batch: int = 16) -> None:
        self._batches: Iterator[np.ndarray] = (
            np.asarray(images[i:i + batch], dtype=np.float32) for i in range(0, len(images), batch)
        )
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self.input_name: batch}


def quantize_int8(float_model: Any, calibration_images: np.ndarray) -> Any:
    """A static int8 (QDQ, per-channel weights) copy of ``float_model`` as an ``onnx.ModelProto``,
    calibrated on ``calibration_images`` (float pixels, as the model takes them)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from tagteller.openset_graph import ADDED_NODES

    with tempfile.TemporaryDirectory(prefix="tagteller-int8-") as tmp:
        src, pre, out = Path(tmp) / "float.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        onnx.save(float_model, src)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        reader = _Calibration(float_model.graph.input[0].name, calibration_images[:INT8_CALIBRATION_IMAGES])
        # The head stays float: 256 levels would round calibrated probabilities, the temperature
        # scaling and the open-set score (and tie answers); the network's convolutions carry the cost.
        # quant_pre_process fuses some of them (the gate's MatMul and Add become a Gemm named
        # "tagteller_gate/MatMulAddFusion"): a fused node keeps its first node's name as a prefix.
        head = [n.name for n in onnx.load(str(pre)).graph.node
                if n.op_type == "Softmax" or n.name.split("/")[0] in ADDED_NODES]
        quantize_static(str(pre), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=head)
        return onnx.load(str(out))


HALF_MIN_ELEMENTS = 1024  # smaller tensors (biases, scales) stay float32: they weigh nothing


def half_precision_weights(float_model: Any) -> Any:
    """A copy of ``float_model`` whose float32 initializers of :data:`HALF_MIN_ELEMENTS` or
    more values are stored as float16, each read through a ``Cast`` back to float32."""
    import copy

    from onnx import TensorProto, helper, numpy_helper

    model = copy.deepcopy(float_model)
    graph = model.graph
    initializers, casts = [], []
    for tensor in graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.dtype == np.float32 and array.size >= HALF_MIN_ELEMENTS:
            half = numpy_helper.from_array(array.astype(np.float16), f"{tensor.name}_float16")
            initializers.append(half)
            casts.append(helper.make_node("Cast", [half.name], [tensor.name], to=TensorProto.FLOAT,
                                          name=f"{tensor.name}_to_float32"))
        else:
            initializers.append(tensor)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model
