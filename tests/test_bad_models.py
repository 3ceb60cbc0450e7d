"""Bad model files: missing, truncated, not ONNX, without or with wrong tagteller metadata, or not
fitting their graph. Each is one clear line from `tagteller scan --model` and `tagteller info`
(exit 2, no traceback). Metadata is JSON parsed as data: nothing in it is ever evaluated.
"""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image
from typer.testing import CliRunner

from tagteller.cli import build_app
from tagteller.engine import Engine
from tagteller.errors import ModelError
from tagteller.modelfile import ModelInfo, parse_metadata
from tagteller.preprocessing import Preprocessing
from tests.builders import colour_model, raw_model_with_metadata

TAGTELLER = Path(sys.executable).parent / "tagteller"


def valid_metadata(**changes) -> dict[str, str]:
    """The metadata of a working 32x32 RGB red/green/blue model, with some values replaced (a
    non-string replacement is written as JSON)."""
    meta = ModelInfo(domain="colours", labels=("red", "green", "blue"), height=32, width=32, color_mode="RGB",
                     preprocessing=Preprocessing(), metrics={"val_accuracy": 1.0}).to_metadata()
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value if isinstance(value, str) else json.dumps(value)
    return meta


def _with_input(**changes) -> dict:
    spec = json.loads(valid_metadata()["input"])
    spec.update(changes)
    return spec


def _with_preprocessing(**changes) -> dict:
    pre = json.loads(Preprocessing().to_json())
    pre.update(changes)
    return pre


def _truncated(path: Path) -> None:
    data = colour_model(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _graph_with_metadata(path: Path, nodes, inputs, outputs, initializers, meta: dict[str, str]) -> Path:
    model = onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers),
                                   opset_imports=[onnx.helper.make_opsetid("", 18)])
    model.ir_version = 9
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())
    return path


def _symbolic_classes_graph(path: Path) -> None:
    """A graph whose class count is the input's channel count, so all its sizes are symbolic: it
    outputs 3 values for an RGB input, while its metadata lists 4 labels. Only running it shows it."""
    _graph_with_metadata(
        path,
        [onnx.helper.make_node("ReduceMean", ["image", "axes"], ["probs"], keepdims=0)],
        [onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["N", "H", "W", "C"])],
        [onnx.helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, ["N", "C"])],
        [onnx.helper.make_tensor("axes", onnx.TensorProto.INT64, [2], [1, 2])],
        valid_metadata(labels=["red", "green", "blue", "violet"]),
    )


def _meta(**changes):
    return lambda path: raw_model_with_metadata(path, valid_metadata(**changes))


#: name -> (how to write the bad model file, words the one-line error must contain)
BAD_MODELS = {
    "missing": (lambda path: None, "model file not found"),
    "empty": (lambda path: path.write_bytes(b""), "model file is empty"),
    "directory": (lambda path: path.mkdir(), "is a directory"),
    "truncated": (_truncated, "not a loadable ONNX model"),
    "random-bytes": (lambda path: path.write_bytes(np.random.default_rng(0).bytes(3000)), "not a loadable ONNX model"),
    "text-file": (lambda path: path.write_text("labels: red, green, blue\n"), "not a loadable ONNX model"),
    "png-named-onnx": (lambda path: Image.new("RGB", (4, 4)).save(path, "PNG"), "not a loadable ONNX model"),
    "no-tagteller-metadata": (lambda path: raw_model_with_metadata(path, {}), "not a tagteller model"),
    "labels-bad-json": (_meta(labels='["red", "green"'), "metadata 'labels' is not valid JSON"),
    "labels-not-a-list": (_meta(labels={"red": 0, "green": 1, "blue": 2}), "'labels' must be a JSON list"),
    "label-not-a-string": (_meta(labels=["red", 2, "blue"]), "label name must be a string"),
    "label-escapes-folder": (_meta(labels=["red", "../../etc/passwd", "blue"]), "contains a path separator"),
    "label-dotdot": (_meta(labels=["red", "..", "blue"]), "contains '..'"),
    "domain-escapes-folder": (_meta(domain="../evil"), "domain name '../evil' contains a path separator"),
    "format-version-2": (_meta(tagteller_format="2"), "metadata format '2' is not supported"),
    "input-not-an-object": (_meta(input=[32, 32]), "metadata 'input' must be a JSON object"),
    "height-as-text": (_meta(input=_with_input(height="32")), "whole-number height and width"),
    "height-infinite": (_meta(input='{"height": 1e999, "width": 32}'), "whole-number height and width"),
    "height-huge-integer": (_meta(input='{"height": 1' + "0" * 5000 + ', "width": 32}'), "is not valid JSON"),
    "layout-nchw": (_meta(input=_with_input(layout="NCHW")), "input layout 'NCHW' is not supported"),
    "preprocessing-unknown-key": (_meta(preprocessing=_with_preprocessing(sharpen=True)),
                                  "preprocessing metadata has unknown keys: ['sharpen']"),
    "preprocessing-wrong-type": (_meta(preprocessing=_with_preprocessing(trim_threshold="24")),
                                 "preprocessing trim_threshold must be int"),
    "preprocessing-bad-choice": (_meta(preprocessing=_with_preprocessing(resize="squash")),
                                 "preprocessing resize='squash'"),
    "preprocessing-not-an-object": (_meta(preprocessing="null"), "preprocessing metadata must be a JSON object"),
    "output-kind-unknown": (_meta(output="scores"), "metadata 'output' must be 'probabilities' or 'logits'"),
    "metrics-not-an-object": (_meta(metrics=[0.9]), "'metrics' and 'training' must be JSON objects"),
    "labels-vs-outputs": (_meta(labels=["red", "green", "blue", "violet"]),
                          "4 labels in metadata but the model outputs 3 classes"),
    "labels-vs-symbolic-outputs": (_symbolic_classes_graph, "4 labels in metadata but the model outputs shape (1, 3)"),
    "input-size-mismatch": (_meta(input=_with_input(height=64)), "metadata says input height 64, the graph has 32"),
    "channels-mismatch": (_meta(input=_with_input(color_mode="L", channels=1),
                                preprocessing=_with_preprocessing(color_mode="L")),
                          "metadata says input channels 1, the graph has 3"),
}


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad-models")
    paths = {}
    for name, (write, _) in BAD_MODELS.items():
        path = folder / f"{name}.onnx"
        write(path)
        paths[name] = path
    return paths


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "red.png"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(path)
    return path


def assert_one_line_error(result, path: Path, reason: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit)  # handled: no exception escaped the command
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}: ") and reason in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("name", BAD_MODELS)
def test_scan_with_bad_model_is_one_line(bad_models, photo, name):
    path = bad_models[name]
    result = CliRunner().invoke(build_app(), ["scan", "--model", str(path), "-f", "jsonl", str(photo)])
    assert_one_line_error(result, path, BAD_MODELS[name][1])
    assert result.stdout == ""  # the model is checked before any record is written


@pytest.mark.parametrize("name", BAD_MODELS)
def test_info_on_bad_model_is_one_line(bad_models, name):
    path = bad_models[name]
    result = CliRunner().invoke(build_app(), ["info", str(path)])
    assert_one_line_error(result, path, BAD_MODELS[name][1])


@pytest.mark.parametrize("name", ["random-bytes", "no-tagteller-metadata", "labels-vs-symbolic-outputs"])
def test_bad_model_as_a_real_process(bad_models, photo, tmp_path, name):
    path = bad_models[name]
    env = dict(os.environ, TAGTELLER_HOME=str(tmp_path / "home"))
    for args in (["info", str(path)], ["scan", "--model", str(path), str(photo)]):
        proc = subprocess.run([str(TAGTELLER), *args], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith(f"error: {path}: ")
        assert BAD_MODELS[name][1] in proc.stderr and "Traceback" not in proc.stderr


def test_the_good_model_these_are_made_from_works(photo, tmp_path):
    """The bad models differ from a working one only in what each case breaks."""
    path = raw_model_with_metadata(tmp_path / "good.onnx", valid_metadata())
    result = CliRunner().invoke(build_app(), ["scan", "--model", str(path), "-f", "jsonl", str(photo)])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["label"] == "red"


# -- metadata is data --------------------------------------------------------------------------

def _payloads(marker: Path) -> dict[str, str]:
    """Python that would create ``marker`` if anything evaluated, executed or unpickled it."""
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    return {"code": code, "exec": f"exec({code!r})", "lambda": f"(lambda: {code})()",
            "pickle": "cos\nsystem\n(S'touch " + str(marker) + "'\ntR."}


def test_metadata_with_code_is_never_evaluated(tmp_path, monkeypatch):
    """Code in free-text fields comes back as the same text; code where a name or a number belongs is
    refused as an invalid value; eval/exec are never called; the marker file never appears."""
    marker = tmp_path / "EVALUATED"
    payloads = _payloads(marker)
    meta = valid_metadata(model_version=payloads["code"], created=payloads["exec"], tagteller_version=payloads["pickle"],
                          metrics={"note": payloads["lambda"], payloads["code"]: 1},
                          training={"recipe": payloads["code"], "nested": [payloads["exec"]]})
    path = raw_model_with_metadata(tmp_path / "payload.onnx", meta)
    result = CliRunner().invoke(build_app(), ["info", "--json", str(path)])
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["model_version"] == payloads["code"] and shown["created"] == payloads["exec"]
    assert shown["tagteller_version"] == payloads["pickle"]
    assert shown["metrics"] == {"note": payloads["lambda"], payloads["code"]: 1}
    assert shown["training"]["nested"] == [payloads["exec"]]

    called = []  # from here on, any eval/exec/compile call (by anyone) is recorded
    for name in ("eval", "exec", "compile"):
        original = getattr(builtins, name)
        monkeypatch.setattr(builtins, name, lambda *a, _n=name, _o=original, **k: (called.append(_n), _o(*a, **k))[1])
    assert parse_metadata(meta).model_version == payloads["code"]
    for key, value in [("labels", json.dumps(["red", payloads["code"], "blue"])), ("domain", payloads["code"]),
                       ("input", json.dumps({"height": payloads["code"], "width": 32})),
                       ("preprocessing", json.dumps({"trim_threshold": payloads["code"]})),
                       ("tagteller_format", payloads["code"]), ("output", payloads["exec"]),
                       ("labels", payloads["code"]), ("input", payloads["lambda"])]:
        with pytest.raises(ModelError):
            parse_metadata(valid_metadata(**{key: value}))
    monkeypatch.undo()
    assert called == []
    assert not marker.exists()


def test_engine_refuses_a_graph_that_does_not_run(tmp_path):
    """A graph whose declared shapes are symbolic but that fails on a real input is refused at load
    (one ModelError), not halfway through a batch with onnxruntime's own exception."""
    path = _graph_with_metadata(
        tmp_path / "reshape.onnx",
        [onnx.helper.make_node("Reshape", ["image", "shape"], ["probs"])],  # 3072 values cannot be (-1, 7)
        [onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["N", "H", "W", "C"])],
        [onnx.helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, ["N", "K"])],
        [onnx.helper.make_tensor("shape", onnx.TensorProto.INT64, [2], [-1, 7])],
        valid_metadata(labels=list("abcdefg")),  # 7 labels: the declared shapes agree with it
    )
    engine = Engine(intra_threads=1)
    with pytest.raises(ModelError, match=r"the model failed on a \(1, 32, 32, 3\) input"):
        engine.load(path)
