"""The ``train`` and ``shared`` markers follow from the code a test runs (tests/conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from tests.conftest import (
    REPO,
    SHARED_NAMES,
    code_uses,
    has_tensorflow,
    needs_tensorflow,
    shared_dataset,
    tensorflow_modules,
)


def _item(function, module=None):
    """The parts of a collected item that the markers read."""
    return types.SimpleNamespace(function=function, module=module, _fixtureinfo=None)


def _keras_in_a_helper():
    import keras  # noqa: F401  (read, never run)


def _calls_the_helper():
    _keras_in_a_helper()


def _trains_a_model():
    from tagteller.train.trainer import train_domain

    train_domain()


def _scans():
    from tagteller.engine import default_engine

    default_engine()


def _reads_shared():
    shared_dataset("shoes")


def test_tensorflow_reached_through_a_helper_marks_train():
    assert needs_tensorflow(code_uses(_item(_calls_the_helper))[0])


def test_a_library_function_that_imports_tensorflow_marks_train():
    """train_domain imports tensorflow inside itself (and through the modules it calls)."""
    assert needs_tensorflow(code_uses(_item(_trains_a_model))[0])


def test_inference_code_does_not_mark_train():
    assert not needs_tensorflow(code_uses(_item(_scans))[0])


def test_a_module_importing_a_tensorflow_module_marks_all_its_tests():
    module = types.ModuleType("tests.fake_module")
    module.export = types.ModuleType("tagteller.train.model")  # as `from tagteller.train import model`
    assert needs_tensorflow(code_uses(_item(_scans, module))[0])


def test_shared_dataset_marks_shared():
    assert code_uses(_item(_reads_shared))[1] & SHARED_NAMES
    assert not code_uses(_item(_scans))[1] & SHARED_NAMES


def test_this_session_marks_and_skips_consistently(request):
    """Every collected test: a module that imports tensorflow at collection has ``train``, and a
    ``train`` test is skipped exactly when tensorflow is not installed."""
    heavy = tensorflow_modules()
    for item in request.session.items:
        imported = {v.__name__ for v in vars(item.module).values() if isinstance(v, types.ModuleType)}
        if any(m.split(".")[0] in ("tensorflow", "keras", "tf2onnx") or m in heavy for m in imported):
            assert item.get_closest_marker("train"), item.nodeid
        if item.get_closest_marker("train"):
            skipped = any(m.name == "skip" for m in item.iter_markers())
            assert skipped == (not has_tensorflow()), item.nodeid


def test_modules_read_as_needing_tensorflow_are_exactly_those_that_fail_without_it():
    """The source reading agrees with importing every tagteller module with tensorflow hidden."""
    script = (
        "import json, pkgutil, sys, importlib\n"
        "for name in ('tensorflow', 'keras', 'tf2onnx', 'tf_keras'): sys.modules[name] = None\n"
        "import tagteller\n"
        "failed = []\n"
        "for info in pkgutil.walk_packages(tagteller.__path__, 'tagteller.'):\n"
        "    try: importlib.import_module(info.name)\n"
        "    except ImportError as exc:\n"
        "        if exc.name in ('tensorflow', 'keras', 'tf2onnx', 'tf_keras'): failed.append(info.name)\n"
        "print(json.dumps(sorted(failed)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == sorted(tensorflow_modules())


def test_the_compression_tests_are_marked_train(request):
    """tests/test_model_compression.py imports tagteller.train.export (which imports keras): it had
    no marker when markers were written by hand."""
    items = [i for i in request.session.items if i.nodeid.startswith("tests/test_model_compression.py")]
    if not items:
        pytest.skip("tests/test_model_compression.py is not collected in this run")
    assert all(i.get_closest_marker("train") for i in items)
