"""The one plugin manager: loads built-in and third-party plugins, calls hooks in isolation.

Plugins are found through the ``tagteller`` entry-point group; the built-in domains in
``plugins/`` (installed as ``tagteller_plugins``) are listed there too, so they load by the same
path as anyone else's. ``TAGTELLER_PLUGINS`` is an allow-list: a comma-separated list of plugin
(entry-point) names to load; unset loads all, empty loads none.

A plugin that raises while importing, or inside a hook, or that registers something invalid, is
recorded in :data:`failures`, named in a warning (the whole reason on one line, and where in the
plugin's code it was raised), and skipped; the rest keep working. So is a plugin module with no
``@tagteller.hookimpl`` function (it would do nothing); a ``TAGTELLER_PLUGINS`` name that no
installed plugin has is warned about too.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pluggy

from tagteller import hookspecs
from tagteller.errors import TagtellerError, UnknownDomainError

ENTRY_POINT_GROUP = "tagteller"
ALLOW_ENV = "TAGTELLER_PLUGINS"


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    stage: str  # "load", a hook name, or "register"
    error: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} failed in {self.stage}: {self.error}"


pm = pluggy.PluginManager("tagteller")
pm.add_hookspecs(hookspecs)

failures: list[PluginFailure] = []
_loaded = False
_load_lock = threading.RLock()
_domains: dict[str, Any] | None = None
_policies: dict[str, Callable[..., Any]] | None = None
_price_sources: dict[str, Callable[..., Any]] | None = None


def _allow_list() -> set[str] | None:
    value = os.environ.get(ALLOW_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


#: Frames of these packages are not "where the plugin raised it".
_OWN_CODE = (os.path.dirname(os.path.abspath(__file__)) + os.sep, os.path.dirname(pluggy.__file__) + os.sep)


def describe_error(exc: BaseException) -> str:
    """``ExceptionType: the whole message`` on one line (pluggy's validation errors give the reason
    on their last line), then ``(at package/module.py:LINE)``: the plugin's own code that raised."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = f"{exc.__class__.__name__}: {'; '.join(lines)}" if lines else exc.__class__.__name__
    where = _raised_at(exc)
    return f"{text} (at {where})" if where else text


def _raised_at(exc: BaseException) -> str | None:
    """``folder/file.py:LINE`` of the innermost frame outside tagteller, pluggy and importlib."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        filename = os.path.abspath(frame.filename) if not frame.filename.startswith("<") else frame.filename
        if filename.startswith("<") or filename.startswith(_OWN_CODE) or "importlib" in filename:
            continue
        parts = filename.split(os.sep)
        return f"{'/'.join(parts[-2:])}:{frame.lineno}"
    return None


def _no_hooks_reason(module: Any) -> str:
    """Why a plugin module registered no hook: undecorated functions named like hooks, or none."""
    undecorated = [name for name in dir(hookspecs) if not name.startswith("_")
                   and callable(getattr(hookspecs, name)) and callable(getattr(module, name, None))]
    if undecorated:
        return (f"{', '.join(undecorated)} in {getattr(module, '__name__', module)!r} is not decorated with "
                "@tagteller.hookimpl, so it is never called")
    return f"{getattr(module, '__name__', module)!r} has no @tagteller.hookimpl function: it provides nothing"


def _warn(message: str) -> None:
    if os.environ.get("TAGTELLER_QUIET_PLUGIN_WARNINGS") != "1":
        print(f"warning: {message}", file=sys.stderr)


def warn_failure(failure: PluginFailure) -> None:
    """Record a plugin failure and print it as a warning on stderr, once: a long-running server
    that meets the same failure on every request neither repeats the warning nor grows the list."""
    if failure in failures:
        return
    failures.append(failure)
    _warn(f"{failure}; skipped")


def load_plugins() -> None:
    """Load every allowed plugin from the entry-point group once; check hook names."""
    global _loaded
    with _load_lock:
        if _loaded:
            return
        _loaded = True
        allow = _allow_list()
        # Built-in domains load first, so a third-party plugin cannot take a built-in domain's name.
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(entry_points, key=lambda e: (not e.value.startswith("tagteller_plugins"), e.name)):
            if allow is not None and ep.name not in allow:
                continue
            if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            try:
                module = ep.load()
                pm.register(module, name=ep.name)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken plugin must not break the rest
                warn_failure(PluginFailure(ep.name, "load", describe_error(exc)))
                continue
            if not pm.get_hookcallers(module):
                pm.unregister(name=ep.name)
                warn_failure(PluginFailure(ep.name, "load", _no_hooks_reason(module)))
                continue
            try:
                pm.check_pending()
            except pluggy.PluginValidationError as exc:
                pm.unregister(name=ep.name)
                warn_failure(PluginFailure(ep.name, "load", describe_error(exc)))
        unmatched = sorted(allow - {ep.name for ep in entry_points}) if allow else []
        if unmatched:
            installed = ", ".join(sorted({ep.name for ep in entry_points})) or "none"
            _warn(f"{ALLOW_ENV} names {', '.join(map(repr, unmatched))}, which no installed plugin has "
                  f"(installed plugins: {installed})")


def register_plugin(plugin: Any, name: str) -> None:
    """Register a plugin object directly (tests, embedding applications)."""
    with _load_lock:
        load_plugins()
        pm.register(plugin, name=name)
        pm.check_pending()
        _reset_registries()


def unregister_plugin(name: str) -> None:
    with _load_lock:
        if pm.has_plugin(name):
            pm.unregister(name=name)
        _reset_registries()


def _reset_registries() -> None:
    global _domains, _policies, _price_sources
    _domains = _policies = _price_sources = None


def reset() -> None:
    """Forget everything loaded (tests use it after changing the environment)."""
    global _loaded
    with _load_lock:
        for name, _plugin in list(pm.list_name_plugin()):
            pm.unregister(name=name)
        failures.clear()
        _loaded = False
        _reset_registries()


def call_each(hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call ``hook_name`` on each plugin separately; a plugin that raises is reported and skipped.

    Returns ``(plugin_name, result)`` for the plugins that succeeded. ``kwargs`` may hold a
    ``register`` callable: it is wrapped so that whatever it records is tagged with the plugin.
    """
    load_plugins()
    caller = getattr(pm.hook, hook_name)
    results = []
    for impl in caller.get_hookimpls():  # registration order (pluggy itself calls last-first)
        args = {name: kwargs[name] for name in impl.argnames}
        try:
            results.append((impl.plugin_name, impl.function(**args)))
        except Exception as exc:  # noqa: BLE001 - isolate plugins from each other
            warn_failure(PluginFailure(impl.plugin_name, hook_name, describe_error(exc)))
    return results


def _stager(staged: list[tuple]) -> Callable[..., None]:
    """A ``register(*args)`` that stages its calls in ``staged`` (bound now, so that a plugin
    calling it after its hook returned never adds to another plugin's calls)."""
    return lambda *args: staged.append(args)


def _collect(hook_name: str, add: Callable[[str, tuple], None]) -> None:
    """Call a ``register_*`` hook per plugin; entries are only kept if the whole hook succeeded."""
    load_plugins()
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():  # registration order: built-ins first
        staged: list[tuple] = []
        try:
            impl.function(register=_stager(staged))
        except Exception as exc:  # noqa: BLE001
            warn_failure(PluginFailure(impl.plugin_name, hook_name, describe_error(exc)))
            continue
        for args in staged:
            try:
                add(impl.plugin_name, args)
            except Exception as exc:  # noqa: BLE001 - a bad registration is that plugin's failure
                warn_failure(PluginFailure(impl.plugin_name, hook_name, describe_error(exc)))


def domains() -> dict[str, Any]:
    """All registered domains by name (first registration of a name wins)."""
    global _domains
    with _load_lock:
        if _domains is not None:
            return _domains
        from tagteller.domain import Domain

        found: dict[str, Domain] = {}

        def add(plugin: str, args: tuple) -> None:
            if len(args) != 1 or not isinstance(args[0], Domain):
                warn_failure(PluginFailure(plugin, "register_domains", "register() takes one tagteller.Domain"))
                return
            domain = args[0]
            if domain.name in found:
                warn_failure(PluginFailure(plugin, "register_domains",
                                    f"domain {domain.name!r} is already registered by plugin {found[domain.name].plugin!r}"))
                return
            found[domain.name] = replace(domain, plugin=plugin)

        _collect("register_domains", add)
        _domains = dict(sorted(found.items()))
        return _domains


def get_domain(name: str) -> Any:
    """The domain called ``name``; :class:`UnknownDomainError` lists the known ones."""
    all_domains = domains()
    if name not in all_domains:
        known = ", ".join(all_domains) or "none (no plugins loaded)"
        raise UnknownDomainError(f"unknown domain {name!r}; known domains: {known}")
    return all_domains[name]


def _named_callables(hook_name: str, what: str,
                     builtins: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Collect ``register(name, callable)`` calls of a hook; a taken name or a bad call is that
    plugin's failure."""
    found = dict(builtins)

    def add(plugin: str, args: tuple) -> None:
        if len(args) != 2 or not isinstance(args[0], str) or not callable(args[1]):
            warn_failure(PluginFailure(plugin, hook_name, f"register() takes (name, {what})"))
        elif args[0] in found:
            warn_failure(PluginFailure(plugin, hook_name, f"{what} {args[0]!r} already exists"))
        else:
            found[args[0]] = args[1]

    _collect(hook_name, add)
    return found


def stopping_policies() -> dict[str, Callable[..., Any]]:
    """Stopping policy factories by name: the built-in ones plus those plugins register."""
    global _policies
    with _load_lock:
        if _policies is None:
            from tagteller.stopping import BUILTIN_POLICIES

            _policies = _named_callables("register_stopping_policies", "policy factory", BUILTIN_POLICIES)
        return _policies


def price_sources() -> dict[str, Callable[..., Any]]:
    """Reference-price sources that plugins register, by name."""
    global _price_sources
    with _load_lock:
        if _price_sources is None:
            _price_sources = _named_callables("register_price_sources", "price source", {})
        return _price_sources


def plugin_table() -> list[dict[str, Any]]:
    """What is loaded: each plugin's name, hooks, version and distribution; then failures."""
    load_plugins()
    dists = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dists[ep.name] = (dist.metadata["Name"], dist.version) if dist is not None else (None, None)
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        package, version = dists.get(name, (None, None))
        rows.append({"name": name, "hooks": hooks, "package": package, "version": version})
    return rows


__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginFailure",
    "TagtellerError",
    "call_each",
    "describe_error",
    "warn_failure",
    "domains",
    "failures",
    "get_domain",
    "load_plugins",
    "plugin_table",
    "pm",
    "price_sources",
    "register_plugin",
    "reset",
    "stopping_policies",
    "unregister_plugin",
]
