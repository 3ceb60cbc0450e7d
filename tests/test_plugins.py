"""The plugin manager: built-ins load by entry point, hooks are isolated, every hook is documented
and exercised (datasette-style meta tests)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tagteller
from tagteller import Domain, hookspecs, plugins
from tagteller.cli import build_app
from tagteller.errors import UnknownDomainError
from tagteller.stopping import Decision, TargetPlateauPolicy

REPO = Path(__file__).resolve().parent.parent
BUILTIN_DOMAINS = {"apparel", "books", "clothing-tags", "products", "shoes", "trousers"}
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_"))


def test_register_domains_builtins_load_through_entry_points():
    assert set(plugins.domains()) == BUILTIN_DOMAINS
    for name, dom in plugins.domains().items():
        assert dom.plugin == name  # one plugin per built-in domain, named like it
    assert {row["name"] for row in plugins.plugin_table()} >= BUILTIN_DOMAINS


def test_allow_list_env_var(monkeypatch):
    monkeypatch.setenv("TAGTELLER_PLUGINS", "shoes,books")
    plugins.reset()
    assert set(plugins.domains()) == {"shoes", "books"}
    monkeypatch.setenv("TAGTELLER_PLUGINS", "")
    plugins.reset()
    assert plugins.domains() == {}


def test_unknown_domain_lists_known_ones():
    with pytest.raises(UnknownDomainError, match="known domains: apparel, books"):
        plugins.get_domain("socks")


class RaisingPlugin:
    @tagteller.hookimpl
    def register_domains(self, register):
        raise ValueError("cannot reach my server")


class GoodPlugin:
    @tagteller.hookimpl
    def register_domains(self, register):
        register(Domain(name="socks", description="Sock pattern", labels=("plain", "striped")))


def test_plugin_raising_in_hook_is_named_and_skipped(capsys):
    plugins.register_plugin(RaisingPlugin(), "raiser")
    plugins.register_plugin(GoodPlugin(), "good")
    found = plugins.domains()
    assert "socks" in found and "shoes" in found
    assert any(f.plugin == "raiser" and "cannot reach my server" in f.error for f in plugins.failures)
    assert "plugin 'raiser' failed in register_domains" in capsys.readouterr().err


def test_misspelled_hook_fails_loudly():
    class Misspelled:
        @tagteller.hookimpl
        def register_domain(self, register):  # missing "s"
            pass

    import pluggy

    with pytest.raises(pluggy.PluginValidationError, match="register_domain"):
        plugins.register_plugin(Misspelled(), "misspelled")


def test_register_stopping_policies_hook():
    class Policies:
        @tagteller.hookimpl
        def register_stopping_policies(self, register):
            register("never-stop", lambda **kw: TargetPlateauPolicy(target_accuracy=None, **kw))

    plugins.register_plugin(Policies(), "policies")
    policies = plugins.stopping_policies()
    assert "target-plateau" in policies and "never-stop" in policies
    policy = policies["never-stop"](patience=2)
    assert isinstance(policy.decide.__self__, TargetPlateauPolicy)
    from tagteller.stopping import EpochRecord, TrainingState

    state = TrainingState([EpochRecord(1, 0, 0.99)], phase=0, has_next_phase=False, elapsed_s=1)
    assert policy.decide(state) == Decision("continue", "val_accuracy 0.9900")


def test_register_commands_hook():
    class Commands:
        @tagteller.hookimpl
        def register_commands(self, cli):
            @cli.command("hello")
            def hello(name: str):
                print(f"hello {name}")

    plugins.register_plugin(Commands(), "commands")
    result = CliRunner().invoke(build_app(), ["hello", "thrift"])
    assert result.exit_code == 0 and result.stdout.strip() == "hello thrift"


def test_register_price_sources_hook():
    class Prices:
        @tagteller.hookimpl
        def register_price_sources(self, register):
            register("example-shop", lambda domain, label: None)

    plugins.register_plugin(Prices(), "prices")
    assert "example-shop" in plugins.price_sources()


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_in_readme(hook):
    assert inspect.getdoc(getattr(hookspecs, hook)), f"{hook} has no docstring"
    readme = (REPO / "README.md").read_text()
    assert re.search(rf"`{hook}\(", readme), f"README's plugin section does not document {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    tests = "".join(p.read_text() for p in (REPO / "tests").glob("test_*.py"))
    assert f"def test_{hook}" in tests, f"no test named test_{hook}*"
