"""Interrupting training: Ctrl-C (once: finish the epoch and stop cleanly; twice: stop now) and
SIGKILL of a training process mid-epoch and mid-export. Whatever happens, the model in use and
the best checkpoints stay whole, and the next ``train`` resumes.

Training runs in a subprocess (``python driver.py train ...``) that registers a test domain and
calls the real ``tagteller`` entry point.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tagteller import Phase, TargetPlateauPolicy
from tagteller.paths import installed_model_path, runs_dir
from tests.conftest import REPO
from tests.test_train_datasets import colours_domain, make_folder_dataset, tiny_recipe

pytestmark = [pytest.mark.train, pytest.mark.slow]

#: Slow enough (about a second an epoch) that signals land inside an epoch.
SLOW_RECIPE = dict(input_size=(64, 64), backbone_options={"filters": (16, 32), "convs_per_block": 2},
                   phases=(Phase("scratch", unfreeze="all", learning_rate=3e-3, epochs=200),))
SLOW_POLICY = dict(target_accuracy=None, patience=200, max_epochs=200)

DRIVER = f"""
import sys
from tagteller import Phase, TargetPlateauPolicy
from tests.test_train_datasets import colours_domain, register, tiny_recipe
register(colours_domain("slow", recipe=tiny_recipe(**{SLOW_RECIPE!r}), stopping=TargetPlateauPolicy(**{SLOW_POLICY!r})))
from tagteller.cli import main
sys.argv = ["tagteller", *sys.argv[1:]]
main()
"""


def slow_domain():
    return colours_domain("slow", recipe=tiny_recipe(**SLOW_RECIPE), stopping=TargetPlateauPolicy(**SLOW_POLICY))


class Training:
    """A training subprocess whose stderr lines can be waited for."""

    def __init__(self, tmp: Path, home: Path, *args: str) -> None:
        driver = tmp / "driver.py"
        driver.write_text(DRIVER)
        env = {**os.environ, "TAGTELLER_HOME": str(home), "PYTHONPATH": str(REPO), "TAGTELLER_QUIET_PLUGIN_WARNINGS": "1"}
        self.proc = subprocess.Popen([sys.executable, str(driver), "train", "--domain", "slow", *args],
                                     cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None if time.monotonic() > deadline else ""
            if line is None:
                self.proc.kill()
                pytest.fail(f"no line starting {prefix!r}; stderr so far:\n" + "\n".join(self.seen))
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def finish(self, timeout: float = 120) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("training did not end; stderr:\n" + "\n".join(self.seen))
        while (line := self.lines.get(timeout=10)) is not None:
            self.seen.append(line)
        return code


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def history_of(run: Path) -> dict:
    return json.loads((run / "history.json").read_text())


def new_run(before: set[str]) -> Path:
    (run,) = [p for p in runs_dir("slow").iterdir() if p.is_dir() and p.name not in before]
    return run


def run_names() -> set[str]:
    folder = runs_dir("slow")
    return {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()


@pytest.fixture
def data(tmp_path):
    return make_folder_dataset(tmp_path / "data", per_class=40, size=64)


def test_first_ctrl_c_finishes_the_epoch_and_exports(tmp_path, isolated_home, data):
    training = Training(tmp_path, isolated_home, str(data), "--yes")
    training.wait_for("epoch   1 ")
    training.proc.send_signal(signal.SIGINT)
    assert training.finish() == 0, "\n".join(training.seen)
    run = new_run(set())
    history = history_of(run)
    assert history["status"] == "finished"
    assert history["decisions"][-1] == {"epoch": len(history["epochs"]), "action": "stop",
                                        "reason": "stopped by Ctrl-C", "by": "interrupt"}
    assert len(history["epochs"]) <= 3  # the epoch under way finished, no more began
    assert any(line.startswith("Ctrl-C: finishing this epoch") for line in training.seen)
    assert installed_model_path("slow").is_file()


def test_second_ctrl_c_stops_at_once_and_keeps_the_best_checkpoint(tmp_path, isolated_home):
    from tagteller.train.model import load_checkpoint

    # More images: an epoch of many steps, so both presses land inside the same epoch.
    data = make_folder_dataset(tmp_path / "data", per_class=100, size=64)
    training = Training(tmp_path, isolated_home, str(data), "--yes")
    training.wait_for("epoch   1 ")
    time.sleep(0.3)  # inside epoch 2 (a Ctrl-C between epochs would count for epoch 1)
    training.proc.send_signal(signal.SIGINT)
    # Two signals during one TensorFlow step reach Python as one: press again once it is seen.
    training.wait_for("Ctrl-C: finishing this epoch")
    training.proc.send_signal(signal.SIGINT)
    assert training.finish() == 130, "\n".join(training.seen)
    run = new_run(set())
    history = history_of(run)
    assert history["status"] == "interrupted", "\n".join(training.seen)
    assert history["decisions"][-1]["by"] == "interrupt"
    assert load_checkpoint(run / "best.keras").output_shape == (None, 3)
    assert not installed_model_path("slow").exists()
    assert any("export it with `tagteller export" in line for line in training.seen)


def test_sigkill_mid_epoch_and_mid_export_leaves_models_whole_and_training_resumes(tmp_path, isolated_home, data):
    import onnx

    from tagteller.train.model import load_checkpoint
    from tagteller.train.trainer import TrainOptions, train_domain

    first = train_domain(slow_domain(), TrainOptions(data=data, epochs=1), log=lambda _: None)
    installed = installed_model_path("slow")
    kept = {installed: sha256(installed), first.run_dir / "best.keras": sha256(first.run_dir / "best.keras")}

    def check_untouched() -> None:
        for path, digest in kept.items():
            assert sha256(path) == digest, f"{path} changed"
        assert load_checkpoint(first.run_dir / "best.keras").output_shape == (None, 3)

    before = run_names()
    training = Training(tmp_path, isolated_home, str(data), "--yes")
    training.wait_for("epoch   1 ")
    training.proc.send_signal(signal.SIGKILL)
    assert training.finish() == -signal.SIGKILL
    killed_in_epoch = new_run(before)
    check_untouched()
    assert history_of(killed_in_epoch)["status"] == "running"  # valid JSON: written atomically
    load_checkpoint(killed_in_epoch / "best.keras")  # epoch 1 finished, so its checkpoint is whole

    before = run_names()
    training = Training(tmp_path, isolated_home, str(data), "--yes", "--epochs", "1")
    training.wait_for("exporting to ")
    training.proc.send_signal(signal.SIGKILL)
    assert training.finish() == -signal.SIGKILL
    killed_in_export = new_run(before)
    check_untouched()
    load_checkpoint(killed_in_export / "best.keras")
    if (killed_in_export / "model.onnx").exists():  # written atomically: whole or absent
        onnx.checker.check_model(onnx.load(str(killed_in_export / "model.onnx")))

    resumed = train_domain(slow_domain(), TrainOptions(data=data, epochs=1), log=lambda _: None)
    source = history_of(resumed.run_dir)["resumed_from"]["run_id"]
    assert source in {first.run_dir.name, killed_in_epoch.name, killed_in_export.name}
    assert resumed.outcome in ("installed", "kept")
