"""Smaller model files: float16-stored weights (:func:`tagteller.train.export.half_precision_weights`).

Needs the ``[train]`` extra: the export module imports keras (through ``tagteller.train.model``)
when it is imported, so these tests are marked ``train``.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from tests.builders import colour_graph  # noqa: E402


def wide_graph():
    """A colour graph over 64 channels whose 64 x 40 weight matrix is worth halving."""
    rng = np.random.default_rng(5)
    return colour_graph(tuple(f"c{i}" for i in range(40)), size=(4, 4), channels=64,
                        weights=rng.normal(0, 0.5, (64, 40)).astype(np.float32))


def run(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def test_half_precision_weights_halve_the_file_and_keep_the_answers():
    from onnx import numpy_helper

    from tagteller.train.export import half_precision_weights

    proto = wide_graph()
    half = half_precision_weights(proto)
    dtypes = {t.name: numpy_helper.to_array(t).dtype for t in half.graph.initializer}
    assert dtypes["W_float16"] == np.float16 and "W" not in dtypes
    assert dtypes["b"] == np.float32  # 40 values: below the size worth halving
    assert [n.op_type for n in half.graph.node][0] == "Cast"
    onnx.checker.check_model(half)
    assert half.ByteSize() < 0.6 * proto.ByteSize()
    x = np.random.default_rng(1).uniform(0, 255, (32, 4, 4, 64)).astype(np.float32)
    full, small = run(proto, x), run(half, x)
    np.testing.assert_allclose(small, full, atol=2e-3)
    assert (small.argmax(1) == full.argmax(1)).mean() >= 0.95
    assert not np.array_equal(small, full)  # the weights really changed precision


def test_half_precision_leaves_the_input_model_alone():
    from tagteller.train.export import half_precision_weights

    proto = wide_graph()
    before = proto.SerializeToString()
    half_precision_weights(proto)
    assert proto.SerializeToString() == before
