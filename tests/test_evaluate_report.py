"""``tagteller report RUN_DIR``: curves.png and summary.json from a scripted history.json
(the run-history format training writes, see docs/evaluate.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tagteller.evaluate.report import write_training_report
from tagteller.runs import load_history
from tagteller.paths import runs_dir


def scripted_history(decisions=True):
    """Two phases: 'head' epochs 1-4 (plateau -> next phase), 'top-blocks' epochs 5-7 (target reached)."""
    val_acc = [0.50, 0.62, 0.63, 0.63, 0.71, 0.83, 0.80]
    epochs = [
        {"epoch": i + 1, "phase": 0 if i < 4 else 1, "phase_name": "head" if i < 4 else "top-blocks",
         "loss": 1.2 - 0.1 * i, "accuracy": 0.45 + 0.06 * i, "val_loss": 1.3 - 0.08 * i,
         "val_accuracy": v, "lr": 2e-3 if i < 4 else 3e-4, "elapsed_s": 10.0 * (i + 1)}
        for i, v in enumerate(val_acc)
    ]
    return {
        "domain": "shoes", "run_id": "20250101-120000", "recipe": {"backbone": "MobileNet"},
        "stopping": {"name": "target-plateau", "target_accuracy": 0.82, "patience": 2},
        "labels": ["adidas", "converse", "nike"], "data_fingerprint": "abc", "val_keys_sha256": "def",
        "phases": [
            {"index": 0, "name": "head", "unfreeze": 0, "learning_rate": 2e-3, "first_epoch": 1},
            {"index": 1, "name": "top-blocks", "unfreeze": 3, "learning_rate": 3e-4, "first_epoch": 5},
        ],
        "epochs": epochs,
        "decisions": [
            {"epoch": 4, "action": "next_phase", "reason": "plateau: no val_accuracy gain above 0.005 for 2 epochs",
             "by": "policy"},
            {"epoch": 6, "action": "continue", "reason": "user chose to go on past the target", "by": "user"},
            {"epoch": 7, "action": "stop", "reason": "interrupted (Ctrl-C)", "by": "interrupt"},
        ] if decisions else [],
        "best": {"epoch": 6, "val_accuracy": 0.83},
        "status": "interrupted",
        "wall_time_s": 70.0,
    }


def write_run(folder, history):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "history.json").write_text(json.dumps(history))
    return folder


def run_cli(*args):
    from tagteller.cli import build_app

    return CliRunner().invoke(build_app(), [str(a) for a in args])


def png_pixels(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def test_report_writes_curves_and_summary(tmp_path):
    run = write_run(tmp_path / "run", scripted_history())
    result = run_cli("report", run)
    assert result.exit_code == 0, result.output
    assert "best val accuracy 83.0% at epoch 6" in result.stdout
    assert "epoch 4: next_phase (policy): plateau" in result.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 7 and summary["status"] == "interrupted"
    assert summary["best"] == {"epoch": 6, "val_accuracy": 0.83, "val_loss": pytest.approx(1.3 - 0.4)}
    assert [(p["name"], p["epochs"], p["first_epoch"], p["last_epoch"], p["best_val_accuracy"], p["best_epoch"])
            for p in summary["phases"]] == [("head", 4, 1, 4, 0.63, 3), ("top-blocks", 3, 5, 7, 0.83, 6)]
    assert [d["action"] for d in summary["decisions"]] == ["next_phase", "continue", "stop"]
    assert summary["final"]["val_accuracy"] == 0.80 and summary["final"]["phase_name"] == "top-blocks"
    pixels = png_pixels(run / "curves.png")
    height, width, _ = pixels.shape
    assert 600 <= width <= 3000 and 400 <= height <= 3000
    assert pixels.std() > 10


def test_decisions_are_drawn(tmp_path):
    """The same history without decisions draws a different, shorter picture (no lines, no notes)."""
    with_marks = write_run(tmp_path / "a", scripted_history(decisions=True))
    without = write_run(tmp_path / "b", scripted_history(decisions=False))
    write_training_report(with_marks)
    write_training_report(without)
    a, b = png_pixels(with_marks / "curves.png"), png_pixels(without / "curves.png")
    assert a.shape[0] > b.shape[0]  # the numbered notes under the plot
    red = lambda p: ((p[..., 0] > 200) & (p[..., 1] < 60) & (p[..., 2] < 60)).sum()  # noqa: E731
    assert red(a) > red(b) + 200  # the red 'stop' line across the panels


def test_out_folder_and_json(tmp_path):
    run = write_run(tmp_path / "run", scripted_history())
    result = run_cli("report", run, "--out", tmp_path / "elsewhere", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run_id"] == "20250101-120000"
    assert (tmp_path / "elsewhere" / "curves.png").is_file()
    assert not (run / "curves.png").exists()
    result = run_cli("report", run / "history.json")  # the file itself: writes beside it
    assert result.exit_code == 0, result.output
    assert (run / "curves.png").is_file() and (run / "summary.json").is_file()


def test_latest_run_of_a_domain(tmp_path):
    folder = runs_dir("shoes")
    write_run(folder / "20250101-120000", scripted_history())
    (folder / "latest").write_text("20250101-120000\n")
    result = run_cli("report", "--domain", "shoes")
    assert result.exit_code == 0, result.output
    assert (folder / "20250101-120000" / "curves.png").is_file()


def test_a_run_still_going_with_one_epoch_and_no_val_metrics(tmp_path):
    history = scripted_history(decisions=False)
    history["epochs"] = [{"epoch": 1, "phase": 0, "loss": 1.0, "accuracy": 0.5}]
    history["status"] = "running"
    history.pop("best")
    run = write_run(tmp_path / "run", history)
    summary = write_training_report(run)
    assert summary["best"] is None and summary["epochs"] == 1
    assert (run / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("content, message", [
    (None, "no training history here"),
    ("{not json", "not valid JSON"),
    ('{"epochs": []}', "no epoch has finished yet"),
    ('{"epochs": [{"loss": 1}]}', "epochs[0] has no integer 'epoch'"),
    ('[1, 2]', "not a training history"),
])
def test_bad_histories_give_one_line_errors(tmp_path, content, message):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "history.json").write_text(content)
    result = run_cli("report", run)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.strip().count("\n") == 0
    with pytest.raises(Exception, match="history.json"):
        load_history(run)


def test_report_needs_a_run(tmp_path):
    result = run_cli("report")
    assert result.exit_code == 2 and "RUN_DIR" in result.stderr
    result = run_cli("report", "--domain", "shoes")
    assert result.exit_code == 2 and "no training run recorded" in result.stderr
