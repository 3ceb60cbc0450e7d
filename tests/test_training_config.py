"""The training configuration is resolved once: the command line beats the domain, the domain
beats the defaults, and the config says where each setting came from (no tensorflow needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagteller import Domain, FolderLayout, Phase, Recipe, TargetPlateauPolicy
from tagteller.errors import TagtellerError
from tagteller.training_config import Limits, TrainOptions, parse_param, resolve_train_config

DATA = Path("photos")


def domain_with(recipe: Recipe | None = None, stopping=None) -> Domain:
    return Domain(name="things", description="test", labels=("a", "b"), layout=FolderLayout(),
                  recipe=recipe or Recipe(), stopping=stopping or TargetPlateauPolicy())


#: A domain that sets every recipe setting the command line can change, to a value unlike the default's.
OWN = domain_with(Recipe(batch_size=16, weights=None, seed=7, phases=(Phase("only", epochs=3),)),
                  TargetPlateauPolicy(target_accuracy=None, patience=5, max_epochs=9))


def test_without_the_domain_or_the_command_line_the_defaults_apply():
    config = resolve_train_config(domain_with(), TrainOptions(data=DATA))
    defaults = Recipe()
    assert config.settings() == {
        "epochs": {"value": None, "from": "default"},
        "time_budget_s": {"value": None, "from": "default"},
        "batch_size": {"value": defaults.batch_size, "from": "default"},
        "weights": {"value": defaults.weights, "from": "default"},
        "seed": {"value": defaults.seed, "from": "default"},
        "stopping": {"value": "target-plateau", "from": "default"},
    }
    assert config.recipe == defaults and config.policy == TargetPlateauPolicy()
    assert config.limits == Limits()


def test_the_domain_beats_the_defaults():
    config = resolve_train_config(OWN, TrainOptions(data=DATA))
    settings = config.settings()
    assert {name: s["from"] for name, s in settings.items()} == {
        "epochs": "default", "time_budget_s": "default", "batch_size": "domain", "weights": "domain",
        "seed": "domain", "stopping": "domain"}
    assert (settings["batch_size"]["value"], settings["weights"]["value"], settings["seed"]["value"]) == (16, None, 7)
    assert config.recipe is OWN.recipe and config.policy is OWN.stopping and config.seed == 7


def test_the_command_line_beats_the_domain():
    options = TrainOptions(data=DATA, epochs=2, time_budget_s=60.0, batch_size=4, weights="imagenet", seed=3,
                           stop_params=dict([parse_param("patience=2")]))
    config = resolve_train_config(OWN, options)
    assert {name: s["from"] for name, s in config.settings().items()} == dict.fromkeys(
        ("epochs", "time_budget_s", "batch_size", "weights", "seed", "stopping"), "command line")
    assert config.limits == Limits(max_epochs=2, time_budget_s=60.0)
    assert (config.recipe.batch_size, config.recipe.weights, config.seed) == (4, "imagenet", 3)
    assert config.recipe.seed == 7  # the validation split keeps the domain's seed
    assert config.recipe.phases == OWN.recipe.phases  # what the command line does not set stays the domain's
    assert config.policy.patience == 2 and config.policy.max_epochs == 9  # the domain's policy, one parameter changed
    line = config.describe()
    assert line.startswith("settings: epochs 2 (command line), time budget 60.0s (command line)")
    assert "batch size 4 (command line)" in line and "seed 3 (command line)" in line


def test_weights_none_on_the_command_line_means_no_weights():
    config = resolve_train_config(domain_with(), TrainOptions(data=DATA, weights="none"))
    assert config.recipe.weights is None and config.settings()["weights"] == {"value": None, "from": "command line"}


def test_a_stopping_policy_by_name_comes_from_the_command_line():
    config = resolve_train_config(OWN, TrainOptions(data=DATA, stopping="target-plateau"))
    assert config.policy == TargetPlateauPolicy()  # the registered policy's own defaults, not the domain's
    assert config.settings()["stopping"] == {"value": "target-plateau", "from": "command line"}


def test_bad_settings_are_refused_while_resolving():
    with pytest.raises(TagtellerError, match="--quantize"):
        resolve_train_config(OWN, TrainOptions(data=DATA, quantize="int4"))
    with pytest.raises(TagtellerError, match="unknown stopping policy"):
        resolve_train_config(OWN, TrainOptions(data=DATA, stopping="never-heard-of-it"))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(TagtellerError, match="--temperature .*positive"):
            resolve_train_config(OWN, TrainOptions(data=DATA, temperature=bad))
    assert resolve_train_config(OWN, TrainOptions(data=DATA, temperature=1.3)).temperature == 1.3
    assert resolve_train_config(OWN, TrainOptions(data=DATA)).temperature is None
