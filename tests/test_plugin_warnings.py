"""Plugin warnings carry the whole reason: pluggy's validation message (its reason is on the last
line) and where the plugin raised; a plugin module with no ``@hookimpl`` function, and a
``TAGTELLER_PLUGINS`` name no installed plugin has, are warned about."""

from __future__ import annotations

import sys

import pytest

from tagteller import plugins
from tests.test_plugin_isolation import HEADER, write_distribution

SOURCES = {
    "wrong-argument": ("tt_warn_wrong_argument", HEADER + (
        "@tagteller.hookimpl\n"
        "def register_domains(registr):  # misspelled argument\n"
        "    pass\n")),
    "undecorated": ("tt_warn_undecorated", HEADER + (
        "def register_domains(register):  # no @tagteller.hookimpl\n"
        "    register(Domain(name='never', description='d', labels=('a', 'b')))\n")),
    "empty": ("tt_warn_empty", "VALUE = 1\n"),
    "raises-deep": ("tt_warn_raises_deep", HEADER + (
        "def helper():\n"
        "    raise LookupError('first line\\nsecond line with the real reason')\n"
        "helper()\n")),
}


@pytest.fixture
def installed(tmp_path, monkeypatch):
    site = write_distribution(tmp_path / "site", "tagteller_warning_fixtures", SOURCES)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("TAGTELLER_PLUGINS", "wrong-argument,undecorated,empty,raises-deep,shoes,leafs")
    monkeypatch.delenv("TAGTELLER_QUIET_PLUGIN_WARNINGS", raising=False)
    plugins.reset()
    yield site
    plugins.reset()
    for name in [m for m in sys.modules if m.startswith("tt_warn_")]:
        del sys.modules[name]


def test_whole_reasons_and_missing_hooks(installed, capsys):
    assert set(plugins.domains()) == {"shoes"}
    failed = {f.plugin: f.error for f in plugins.failures}
    assert set(failed) == {"wrong-argument", "undecorated", "empty", "raises-deep"}
    assert "Argument(s) {'registr'} are declared in the hookimpl but can not be found in the hookspec" \
        in failed["wrong-argument"]
    assert "register_domains in 'tt_warn_undecorated' is not decorated with @tagteller.hookimpl" \
        in failed["undecorated"]
    assert "'tt_warn_empty' has no @tagteller.hookimpl function" in failed["empty"]
    assert failed["raises-deep"] == ("LookupError: first line; second line with the real reason "
                                     "(at site/tt_warn_raises_deep.py:5)")
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 5, err  # one line each: four plugins and the allow-list name
    assert "warning: TAGTELLER_PLUGINS names 'leafs', which no installed plugin has" in err
    assert "'undecorated'" not in [w for w in warnings if "TAGTELLER_PLUGINS" in w][0]
