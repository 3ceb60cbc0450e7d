"""What one ``tagteller train`` run is configured with, resolved once.

:class:`TrainOptions` is what the command line said (None: not given). :func:`resolve_train_config`
merges it with the domain (its recipe and stopping policy) and the built-in defaults into one
:class:`TrainConfig`: the command line beats the domain, the domain beats the defaults, and the
config records where each setting came from (:attr:`TrainConfig.sources`), for the run log,
``history.json`` and the model's training summary. Everything after it (the training loop, the
epoch decisions, the export) reads that one object.

Pure Python: no tensorflow.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagteller import plugins
from tagteller.domain import Domain, Recipe
from tagteller.errors import TagtellerError
from tagteller.openset import check_temperature
from tagteller.stopping import StoppingPolicy, TargetPlateauPolicy

#: Where a setting came from, strongest first.
COMMAND_LINE, DOMAIN, DEFAULT = "command line", "domain", "default"
#: ``--quantize``: int8 (falling back to fp16 when it loses more than a point) or fp16 alone.
QUANTIZE_CHOICES = (None, "int8", "fp16")

_DEFAULT_RECIPE = Recipe()
_DEFAULT_POLICY = TargetPlateauPolicy()


@dataclass
class TrainOptions:
    """What the ``train`` command line can change; None means "not given" (the domain's, else the default)."""

    data: Path
    epochs: int | None = None
    time_budget_s: float | None = None
    fresh: bool = False
    force: bool = False
    weights: str | None = None  # "imagenet", "none" or a path; None: the recipe's
    install_to: Path | None = None
    quantize: str | None = None
    seed: int | None = None
    batch_size: int | None = None
    stopping: str | None = None
    stop_params: dict[str, Any] = field(default_factory=dict)
    use_feedback: bool = True
    use_taught: bool = False  # --with-taught: labels taught with `tagteller teach` become training data
    workers: int | None = None
    unknown_data: list[str] = field(default_factory=list)  # --unknown-data: DIR or DOMAIN=DIR
    temperature: float | None = None  # --temperature: calibrate with it instead of fitting one
    command_line: str = ""


@dataclass(frozen=True)
class Limits:
    """Hard limits from the command line, checked before the stopping policy."""

    max_epochs: int | None = None  # --epochs: at most this many epochs in this run
    time_budget_s: float | None = None  # --time-budget


@dataclass(frozen=True)
class TrainConfig:
    """One training run's settings, resolved (:func:`resolve_train_config`).

    ``recipe`` is the domain's recipe with the command line's changes (batch size, weights);
    ``seed`` seeds initialisation, shuffling and augmentation (the validation split always uses
    ``recipe.seed``); ``sources`` maps each setting of :data:`SETTINGS` to where it came from.
    """

    data: Path
    recipe: Recipe
    policy: StoppingPolicy
    limits: Limits
    seed: int
    sources: dict[str, str]
    quantize: str | None = None
    fresh: bool = False
    force: bool = False
    install_to: Path | None = None
    use_feedback: bool = True
    use_taught: bool = False
    workers: int | None = None
    unknown_data: tuple[str, ...] = ()
    temperature: float | None = None
    command_line: str = ""

    def settings(self) -> dict[str, dict[str, Any]]:
        """Each setting of :data:`SETTINGS` with its value and where it came from (JSON-ready)."""
        values = {
            "epochs": self.limits.max_epochs,
            "time_budget_s": self.limits.time_budget_s,
            "batch_size": self.recipe.batch_size,
            "weights": self.recipe.weights,
            "seed": self.seed,
            "stopping": policy_name(self.policy),
        }
        return {name: {"value": values[name], "from": self.sources[name]} for name in SETTINGS}

    def describe(self) -> str:
        """One log line: ``settings: epochs 4 (command line), time budget none (default), ...``."""
        parts = [f"{name.removesuffix('_s').replace('_', ' ')} "
                 f"{'none' if s['value'] is None else s['value']}{'s' if name.endswith('_s') and s['value'] else ''} "
                 f"({s['from']})" for name, s in self.settings().items()]
        return "settings: " + ", ".join(parts)


#: The settings whose source is recorded: those the command line, the domain and the defaults can all set.
SETTINGS = ("epochs", "time_budget_s", "batch_size", "weights", "seed", "stopping")


def _layered(given: bool, cli: Any, domain: Any, default: Any) -> tuple[Any, str]:
    """The command line's value when ``given``, else the domain's when it differs from the
    default, else the default; and which it was."""
    if given:
        return cli, COMMAND_LINE
    if domain != default:
        return domain, DOMAIN
    return default, DEFAULT


def resolve_train_config(domain: Domain, options: TrainOptions) -> TrainConfig:
    """Merge the command line, the domain and the defaults into one :class:`TrainConfig`
    (command line > domain > defaults), recording where each setting came from."""
    recipe = domain.recipe
    sources: dict[str, str] = {}
    epochs, sources["epochs"] = _layered(options.epochs is not None, options.epochs, None, None)
    budget, sources["time_budget_s"] = _layered(options.time_budget_s is not None, options.time_budget_s, None, None)
    batch_size, sources["batch_size"] = _layered(options.batch_size is not None, options.batch_size,
                                                 recipe.batch_size, _DEFAULT_RECIPE.batch_size)
    cli_weights = None if options.weights is None or options.weights.lower() == "none" else options.weights
    weights, sources["weights"] = _layered(options.weights is not None, cli_weights,
                                           recipe.weights, _DEFAULT_RECIPE.weights)
    seed, sources["seed"] = _layered(options.seed is not None, options.seed, recipe.seed, _DEFAULT_RECIPE.seed)
    policy = choose_policy(domain, options.stopping, options.stop_params)
    sources["stopping"] = (COMMAND_LINE if options.stopping or options.stop_params
                           else DOMAIN if domain.stopping != _DEFAULT_POLICY else DEFAULT)
    if options.quantize not in QUANTIZE_CHOICES:
        raise TagtellerError(f"--quantize {options.quantize!r}: 'int8' or 'fp16'")
    if options.temperature is not None:
        check_temperature(options.temperature, "--temperature")
    if (batch_size, weights) != (recipe.batch_size, recipe.weights):
        recipe = recipe.with_(batch_size=batch_size, weights=weights)
    return TrainConfig(
        data=Path(options.data), recipe=recipe, policy=policy, limits=Limits(epochs, budget), seed=seed,
        sources=sources, quantize=options.quantize, fresh=options.fresh, force=options.force,
        install_to=Path(options.install_to) if options.install_to else None, use_feedback=options.use_feedback,
        use_taught=options.use_taught, workers=options.workers, unknown_data=tuple(options.unknown_data),
        temperature=options.temperature, command_line=options.command_line,
    )


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` with a JSON value (``0.9``, ``5``, ``null``, ``true``) or else a string."""
    if "=" not in text:
        raise TagtellerError(f"--stop-param {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip().replace("-", "_")
    if raw.strip().lower() == "none":
        return key, None
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def choose_policy(domain: Domain, name: str | None, params: dict[str, Any]) -> StoppingPolicy:
    """``--stopping NAME`` from the registered policies, or the domain's policy with ``params``
    changed (when it is a dataclass, as the built-in one is)."""
    try:
        if name:
            factories = plugins.stopping_policies()
            if name not in factories:
                raise TagtellerError(f"unknown stopping policy {name!r}; known: {', '.join(sorted(factories))}")
            policy = factories[name](**params)
        elif params:
            if not dataclasses.is_dataclass(domain.stopping):
                raise TagtellerError(f"domain {domain.name!r}: its stopping policy takes no --stop-param; use --stopping NAME")
            policy = dataclasses.replace(domain.stopping, **params)
        else:
            policy = domain.stopping
    except (TypeError, ValueError) as exc:
        raise TagtellerError(f"stopping policy parameters: {exc}") from None
    if not isinstance(policy, StoppingPolicy):
        raise TagtellerError(f"stopping policy {name!r} has no decide()/describe()")
    return policy


def policy_name(policy: StoppingPolicy) -> str:
    """The name a policy gives itself in ``describe()``, else its class name."""
    return str(policy.describe().get("name") or type(policy).__name__)
