"""The hooks a tagteller plugin can implement, grouped by when they are called.

Each plugin is a module (or object) with functions decorated ``@tagteller.hookimpl`` whose names
match the specs below; a misspelled hook name fails loudly (``pm.check_pending()``). Every hook
is called once per plugin, in isolation: a plugin that raises is named in a warning and skipped,
and the others still run. None of these hooks is ``firstresult``: every plugin is asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from tagteller.domain import Domain
    from tagteller.stopping import StoppingPolicy

hookspec = pluggy.HookspecMarker("tagteller")


# -- Registration: called when the plugins are first loaded ---------------------------------

@hookspec
def register_domains(register: Callable[["Domain"], None]) -> None:
    """Register domains: call ``register(Domain(...))`` once per domain.

    A name already taken by another plugin is refused with a warning naming both plugins.
    """


@hookspec
def register_stopping_policies(register: Callable[[str, Callable[..., "StoppingPolicy"]], None]) -> None:
    """Register stopping policies by name: ``register("name", factory)``.

    ``factory(**params)`` returns an object with ``decide(state)`` and ``describe()``
    (see :mod:`tagteller.stopping`); ``tagteller train --stopping name`` selects it.
    """


@hookspec
def register_price_sources(register: Callable[[str, Callable[[str, str], Any]], None]) -> None:
    """Register reference-price sources: ``register("name", lookup)``.

    ``lookup(domain, label)`` returns a price range for that label, or None when it has none.
    """


# -- Command line: called when the CLI is built ----------------------------------------------

@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``tagteller`` CLI: ``cli`` is the root ``typer.Typer`` app."""
