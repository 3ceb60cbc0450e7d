"""Stopping decisions on scripted histories: the policy, phase caps, limits, prompts, Ctrl-C.

Pure Python: :class:`tagteller.epoch_decisions.EpochDirector` is driven epoch by epoch with
scripted validation accuracies and a fake clock; no tensorflow is needed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from rich.console import Console

from tagteller import Phase, TargetPlateauPolicy
from tagteller.stopping import Decision, EpochRecord
from tagteller.epoch_decisions import EpochDirector, Limits
from tagteller.training_prompt import ConsolePrompter, NeverAsk, UserChoice, choose_prompter

PHASES = (Phase("head", 0, 1e-3, epochs=10), Phase("top", 2, 1e-4, epochs=10))


class ScriptedPrompter:
    """Answers from a list, and remembers what it was asked."""

    interactive = True

    def __init__(self, *answers: UserChoice) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    def ask(self, situation: str, has_next_phase: bool) -> UserChoice:
        self.asked.append(situation)
        return self.answers.pop(0)


@dataclass
class Run:
    director: EpochDirector
    decisions: list[tuple[int, str, str, str]]
    trace: list[tuple[int, int, str]]  # (epoch, phase index after deciding, action)


def make(policy, phases=PHASES, limits=None, prompter=None, blocks=14, start_phase=0) -> Run:
    decisions: list[tuple[int, str, str, str]] = []
    director = EpochDirector(phases, policy, limits or Limits(), prompter or NeverAsk(),
                             lambda *d: decisions.append(d), lambda: blocks, start_phase)
    return Run(director, decisions, [])


def drive(run: Run, accuracies, seconds_per_epoch: float = 10.0, interrupt_at: int | None = None) -> Decision:
    """Feed one accuracy per epoch until the director says stop (or the script ends)."""
    decision = Decision("continue", "")
    for acc in accuracies:
        epoch = run.director.begin_epoch()
        if interrupt_at == epoch:
            run.director.interrupt_requested = True
        record = EpochRecord(epoch, run.director.phase_index, acc, elapsed_s=epoch * seconds_per_epoch)
        decision = run.director.end_epoch(record)
        run.trace.append((epoch, run.director.phase_index, decision.action))
        if decision.action == "stop":
            return decision
    return decision


def test_plateau_moves_to_the_next_phase_then_stops_after_the_last():
    run = make(TargetPlateauPolicy(target_accuracy=None, patience=2, min_delta=0.01, max_epochs=50))
    # head: rises, then flat for 2 epochs -> next phase; top: rises, flat for 2 -> stop
    final = drive(run, [0.5, 0.6, 0.6, 0.605, 0.7, 0.8, 0.8, 0.8, 0.9])
    assert final.action == "stop"
    assert [t[2] for t in run.trace] == ["continue", "continue", "continue", "next_phase",
                                         "continue", "continue", "continue", "stop"]
    assert run.trace[3][1] == 1  # the director moved to phase 1 on epoch 4
    assert [(d[0], d[1], d[3]) for d in run.decisions] == [(4, "next_phase", "policy"), (8, "stop", "policy")]
    assert run.decisions[-1][2].startswith("plateau")


def test_target_accuracy_stops_at_once():
    run = make(TargetPlateauPolicy(target_accuracy=0.85, patience=5))
    final = drive(run, [0.5, 0.84, 0.86, 0.99])
    assert final.action == "stop" and run.director.epoch == 3
    assert "reached target" in final.reason


def test_phase_epoch_cap_moves_on_even_while_improving():
    phases = (Phase("head", 0, 1e-3, epochs=2), Phase("top", 2, 1e-4, epochs=3))
    run = make(TargetPlateauPolicy(target_accuracy=None, patience=10), phases=phases)
    final = drive(run, [0.1 * i for i in range(1, 10)])
    assert [t[1] for t in run.trace] == [0, 1, 1, 1, 1]
    assert final.action == "stop" and run.director.epoch == 5
    assert "ran its 3 epochs" in final.reason


def test_command_line_limits_come_before_the_policy():
    run = make(TargetPlateauPolicy(target_accuracy=None, patience=10), limits=Limits(max_epochs=3))
    assert drive(run, [0.1, 0.2, 0.3, 0.4]).reason == "--epochs 3 reached"
    run = make(TargetPlateauPolicy(target_accuracy=None, patience=10), limits=Limits(time_budget_s=25))
    final = drive(run, [0.1, 0.2, 0.3, 0.4], seconds_per_epoch=10)
    assert run.director.epoch == 3 and final.reason.startswith("--time-budget 25s used")


def test_policy_time_budget_uses_elapsed_time():
    run = make(TargetPlateauPolicy(target_accuracy=None, patience=10, time_budget_s=100))
    final = drive(run, [0.1 * i for i in range(1, 10)], seconds_per_epoch=40)
    # after epoch 2 (80 s) a third 40 s epoch would end at 120 s, past the 100 s budget
    assert run.director.epoch == 2 and "would not fit" in final.reason


def test_person_continues_then_stops():
    prompter = ScriptedPrompter(UserChoice("continue", epochs=2), UserChoice("stop"))
    run = make(TargetPlateauPolicy(target_accuracy=None, max_epochs=2), prompter=prompter)
    final = drive(run, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    # asked after epoch 2 (max_epochs), ran 2 more, asked again after epoch 4
    assert run.director.epoch == 4 and final.action == "stop"
    assert len(prompter.asked) == 2 and "max_epochs 2" in prompter.asked[0]
    assert [(d[0], d[1], d[3]) for d in run.decisions] == [
        (2, "stop", "policy"), (2, "continue", "user"), (4, "stop", "policy"), (4, "stop", "user")]


def test_person_unfreezes_the_next_phase_then_more_blocks():
    prompter = ScriptedPrompter(UserChoice("unfreeze"), UserChoice("unfreeze", epochs=2, blocks=3),
                                UserChoice("stop"))
    policy = TargetPlateauPolicy(target_accuracy=None, patience=1, min_delta=0.0, on_plateau="stop")
    run = make(policy, prompter=prompter, blocks=14)
    drive(run, [0.5, 0.5, 0.6, 0.6, 0.7, 0.8, 0.9])
    phases = run.director.phases
    assert [p.name for p in phases] == ["head", "top", "top+3"]
    assert phases[2].unfreeze == 5 and phases[2].learning_rate == pytest.approx(5e-5) and phases[2].epochs == 2
    # phase top+3 ran its 2 epochs (6 and 7) with no prompt in between, then the person stopped
    assert [t[1] for t in run.trace] == [0, 1, 1, 2, 2, 2]
    assert len(prompter.asked) == 3


def test_unfreezing_past_the_top_becomes_all():
    prompter = ScriptedPrompter(UserChoice("unfreeze", epochs=1, blocks=20), UserChoice("stop"))
    run = make(TargetPlateauPolicy(target_accuracy=None, max_epochs=1), phases=(Phase("top", 2, 1e-3, 5),),
               prompter=prompter, blocks=14)
    drive(run, [0.5, 0.6, 0.7])
    assert run.director.phases[-1].unfreeze == "all"


def test_ctrl_c_without_a_person_stops_by_interrupt():
    run = make(TargetPlateauPolicy(target_accuracy=None, patience=10))
    final = drive(run, [0.1, 0.2, 0.3, 0.4], interrupt_at=2)
    assert run.director.epoch == 2 and final.action == "stop"
    assert run.decisions == [(2, "stop", "stopped by Ctrl-C", "interrupt")]


def test_ctrl_c_with_a_person_asks_and_can_continue():
    prompter = ScriptedPrompter(UserChoice("continue", epochs=1), UserChoice("stop"))
    run = make(TargetPlateauPolicy(target_accuracy=None, patience=10, max_epochs=3), prompter=prompter)
    final = drive(run, [0.1, 0.2, 0.3, 0.4, 0.5], interrupt_at=1)
    assert "Ctrl-C" in prompter.asked[0]
    assert final.action == "stop" and run.director.epoch == 3


def test_prompt_interrupted_by_ctrl_c_means_stop():
    class Raises:
        interactive = True

        def ask(self, situation, has_next_phase):
            raise KeyboardInterrupt

    run = make(TargetPlateauPolicy(target_accuracy=None, max_epochs=1), prompter=Raises())
    assert drive(run, [0.5, 0.6]).action == "stop"
    assert run.decisions[-1][3] == "user"


def test_resumed_run_starts_in_its_phase():
    run = make(TargetPlateauPolicy(target_accuracy=None, patience=1, min_delta=0.0), start_phase=5)
    assert run.director.phase_index == 1  # clamped to the last phase


def test_a_plugin_policy_with_an_unknown_answer_is_refused():
    class Odd:
        def decide(self, state):
            return Decision("pause", "?")  # type: ignore[arg-type]

        def describe(self):
            return {"name": "odd"}

    run = make(Odd())
    with pytest.raises(ValueError, match="pause"):
        drive(run, [0.5])


def test_console_prompter_reads_answers_from_a_stream():
    console = Console(file=io.StringIO(), force_terminal=False)
    prompter = ConsolePrompter(console, io.StringIO("continue\n0\n4\n"))
    assert prompter.ask("stop?", True) == UserChoice("continue", epochs=4)  # 0 is refused, asked again
    prompter = ConsolePrompter(console, io.StringIO("unfreeze\n3\n6\n"))
    assert prompter.ask("stop?", False) == UserChoice("unfreeze", epochs=6, blocks=3)
    assert ConsolePrompter(console, io.StringIO("unfreeze\n")).ask("stop?", True) == UserChoice("unfreeze")
    assert ConsolePrompter(console, io.StringIO("")).ask("stop?", True) == UserChoice("stop")  # EOF: default


def test_yes_or_no_terminal_never_asks():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(choose_prompter(True, Tty()), NeverAsk)
    assert isinstance(choose_prompter(False, io.StringIO()), NeverAsk)
    assert isinstance(choose_prompter(False, Tty()), ConsolePrompter)


def test_cosine_schedule_and_its_horizon():
    from tagteller.train.schedule import cosine_horizon, cosine_rate

    rates = [cosine_rate(1e-3, step, 5) for step in range(6)]
    assert rates[0] == pytest.approx(1e-3) and rates[4] == pytest.approx(1e-5) and rates[5] == rates[4]
    assert rates == sorted(rates, reverse=True)
    assert rates[2] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)
    # 30 planned epochs, but only 600 s left at 100 s an epoch after 4 done: the phase gets 10
    assert cosine_horizon(30, 4, None, 600, 100) == 10
    assert cosine_horizon(30, 4, 3, None, None) == 7  # --epochs leaves 3 more
    assert cosine_horizon(8, 0, None, None, None) == 8
    assert cosine_horizon(30, 2, None, 10, 100) == 3  # out of time: at least this epoch


def test_policy_time_budget_stops_before_an_epoch_that_would_not_fit():
    from tagteller.stopping import EpochRecord, TrainingState

    policy = TargetPlateauPolicy(target_accuracy=None, patience=10, time_budget_s=100)
    history = [EpochRecord(1, 0, 0.5, elapsed_s=30), EpochRecord(2, 0, 0.6, elapsed_s=60)]
    assert policy.decide(TrainingState(history, 0, False, 60)).action == "continue"  # 60 + 30 fits
    history.append(EpochRecord(3, 0, 0.7, elapsed_s=75))
    decision = policy.decide(TrainingState(history, 0, False, 75))  # 75 + 15 fits
    assert decision.action == "continue"
    history.append(EpochRecord(4, 0, 0.8, elapsed_s=95))
    decision = policy.decide(TrainingState(history, 0, False, 95))  # 95 + 20 > 100
    assert decision.action == "stop" and "would not fit" in decision.reason
