"""Fuzzing, bounded: image decoding and model-metadata parsing raise only TagtellerError subclasses
or succeed with a well-formed result, on arbitrary and on mutated valid input.

The strategies and properties are the harness in ``scripts/fuzz.py`` (which runs them for longer);
here each runs ~200 cases, and the harness itself is checked: it starts from valid files, reaches
past the first check, and does report a planted crash.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tagteller import imaging, modelfile
from tagteller.errors import ModelError

REPO = Path(__file__).resolve().parent.parent


def _load_harness():
    spec = importlib.util.spec_from_file_location("tagteller_fuzz_harness", REPO / "scripts" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclass/hypothesis introspection wants it importable
    spec.loader.exec_module(module)
    return module


fuzz = _load_harness()

BOUNDED = settings(max_examples=200, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

pytestmark = pytest.mark.filterwarnings("ignore")  # Pillow warns about the broken files it is fed


@BOUNDED
@given(data=fuzz.arbitrary_bytes(), size=fuzz.input_sizes(), pre=fuzz.preprocessings())
def test_prepare_on_arbitrary_bytes(data, size, pre):
    fuzz.check_prepare(data, size, pre)


@BOUNDED
@given(data=fuzz.mutated_images(), size=fuzz.input_sizes(), pre=fuzz.preprocessings())
def test_prepare_on_mutated_images(data, size, pre):
    fuzz.check_prepare(data, size, pre)


@BOUNDED
@given(meta=fuzz.metadata_dicts())
def test_parse_metadata_on_arbitrary_metadata(meta):
    fuzz.check_parse(meta)


# -- the harness is not vacuous -------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(fuzz.seed_images()))
def test_every_seed_image_is_valid(name):
    """Mutations start from files that decode, so they reach the decoders' inner paths."""
    pre = fuzz.Preprocessing()
    assert fuzz.check_prepare(fuzz.seed_images()[name], (8, 8), pre) == "accepted"


def test_valid_metadata_is_accepted():
    assert fuzz.check_parse(fuzz.valid_metadata()) == "accepted"


@pytest.mark.parametrize("target", ["image-mutations", "metadata"])
def test_targets_reach_past_the_first_check(target):
    outcomes, crashes = fuzz.run_target(target, 150, seed=1, crash_dir=None)
    assert crashes == {}
    assert outcomes["accepted"] >= 10 and outcomes["refused"] >= 10, outcomes


def test_harness_reports_a_planted_image_crash(monkeypatch, tmp_path):
    real_prepare = imaging.prepare

    def prepare_with_a_bug(source, size, pre):
        if isinstance(source, bytes) and source.startswith(b"\x89PNG"):
            raise struct.error("planted: unpack requires a buffer of 4 bytes")
        return real_prepare(source, size, pre)

    monkeypatch.setattr(imaging, "prepare", prepare_with_a_bug)
    outcomes, crashes = fuzz.run_target("image-mutations", 60, seed=2, crash_dir=tmp_path)
    assert outcomes["crashed"] > 0
    [(key, message)] = crashes.items()
    assert key.startswith("error at test_fuzz.py:") and message.startswith("error: planted")
    saved = list(tmp_path.iterdir())
    assert len(saved) == 1 and saved[0].read_bytes().startswith(b"\x89PNG")


def test_harness_reports_a_planted_metadata_crash(monkeypatch, capsys):
    real_parse = modelfile.parse_metadata

    def parse_with_a_bug(meta, where="model"):
        if "labels" not in meta:
            return {}["labels"]  # KeyError: what an unchecked lookup would do
        return real_parse(meta, where)

    monkeypatch.setattr(modelfile, "parse_metadata", parse_with_a_bug)
    assert fuzz.main(["--examples", "80", "--target", "metadata", "--seed", "3"]) == 1
    out = capsys.readouterr().out
    assert "metadata: 80 cases" in out and "CRASH KeyError at test_fuzz.py:" in out
    assert out.splitlines()[-1] == "total: 80 cases, 1 distinct crash(es)"


def test_script_reports_cases_and_no_crash(capsys):
    assert fuzz.main(["--examples", "40", "--seed", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["image-bytes", "image-mutations", "metadata", "total"]
    assert lines[-1] == "total: 120 cases, 0 distinct crash(es)"


@pytest.mark.parametrize("damage", ["cut", "short-extension"])
def test_gif_with_a_broken_second_frame_gives_its_first(damage):
    """The crashes the image fuzzer found (struct.error at seed 5, IndexError at seed 22): Pillow
    parsing the second frame's header to answer ``is_animated``. Only the first frame is used now."""
    from tests.test_bad_images import gif_with_broken_second_frame

    out = imaging.prepare(gif_with_broken_second_frame(damage), (8, 8), fuzz.Preprocessing())
    assert out[..., 0].min() > 250 and out[..., 2].max() < 5  # the red first frame


def test_metadata_errors_are_model_errors_not_crashes():
    """The inputs the fuzzer found crashing parse_metadata before it was fixed, kept as regressions."""
    valid = fuzz.valid_metadata()
    found = [
        {**valid, "labels": ["red", "green"]},  # a non-string value: json.loads(list) was a TypeError
        {**valid, "tagteller_format": {"1": 1}},  # unhashable in a set lookup: TypeError
        {**valid, "input": '{"height": 1' + "0" * 5000 + ', "width": 32}'},  # ValueError: int digit limit
        {**valid, "input": '{"height": 1e999, "width": 32}'},  # int(inf): OverflowError
        {**valid, "preprocessing": '{"trim_threshold": 1e999}'},  # int(inf) in Preprocessing: OverflowError
        {**valid, "preprocessing": '{"trim": true, "trim_threshold": "12"}'},  # accepted, then crashed prepare()
    ]
    for meta in found:
        with pytest.raises(ModelError):
            modelfile.parse_metadata(meta)
