"""Plugins from strangers cannot break tagteller: a plugin that raises at import or in a hook,
registers a taken domain name or something that is not a Domain, or misspells a hook, is named in a
warning and skipped, and every other domain still works. ``TAGTELLER_PLUGINS`` is an allow-list.

The plugins are real installed distributions as far as ``importlib.metadata`` can tell: a
``*.dist-info`` folder with an ``entry_points.txt`` in group ``tagteller`` next to the modules, on
``sys.path`` for the test (or on ``PYTHONPATH`` of a real ``tagteller`` process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from tagteller import plugins
from tagteller.cli import build_app
from tests.builders import colour_model

TAGTELLER = Path(sys.executable).parent / "tagteller"
BUILTIN_DOMAINS = {"apparel", "books", "clothing-tags", "products", "shoes", "trousers"}

HEADER = "import tagteller\nfrom tagteller import Domain\n\n"

#: entry-point name -> (module name, module source). MODEL_PATH is replaced by the model's path.
PLUGIN_SOURCES = {
    "good": ("tt_iso_good", HEADER + (
        "@tagteller.hookimpl\n"
        "def register_domains(register):\n"
        "    register(Domain(name='leaves', description='Leaf colour', labels=('red', 'green', 'blue'),\n"
        "                    model_path=MODEL_PATH))\n")),
    "import-error": ("tt_iso_import_error", "raise RuntimeError('boom at import')\n"),
    "hook-error": ("tt_iso_hook_error", HEADER + (
        "@tagteller.hookimpl\n"
        "def register_domains(register):\n"
        "    register(Domain(name='half-done', description='never kept', labels=('a', 'b')))\n"
        "    raise ValueError('cannot reach my server')\n")),
    "zz-duplicate": ("tt_iso_duplicate", HEADER + (
        "@tagteller.hookimpl\n"
        "def register_domains(register):\n"
        "    register(Domain(name='shoes', description='Counterfeit shoes', labels=('fake', 'real')))\n")),
    "not-a-domain": ("tt_iso_not_a_domain", HEADER + (
        "@tagteller.hookimpl\n"
        "def register_domains(register):\n"
        "    register({'name': 'socks', 'labels': ['plain', 'striped']})\n")),
    "misspelled": ("tt_iso_misspelled", HEADER + (
        "@tagteller.hookimpl\n"
        "def register_domain(register):  # missing 's'\n"
        "    register(Domain(name='typo', description='never loaded', labels=('a', 'b')))\n")),
    "bad-commands": ("tt_iso_bad_commands", HEADER + (
        "@tagteller.hookimpl\n"
        "def register_commands(cli):\n"
        "    raise KeyError('no such app attribute')\n")),
}

#: entry-point name -> (stage, words of the error) each broken plugin must be reported with
EXPECTED_FAILURES = {
    "import-error": ("load", "RuntimeError: boom at import"),
    "hook-error": ("register_domains", "ValueError: cannot reach my server"),
    "not-a-domain": ("register_domains", "register() takes one tagteller.Domain"),
    "misspelled": ("load", "register_domain"),
    "bad-commands": ("register_commands", "KeyError: 'no such app attribute'"),
}


def write_distribution(site: Path, dist: str, sources: dict[str, tuple[str, str]], model: Path | None = None) -> Path:
    """Modules plus ``<dist>-0.0.1.dist-info`` (METADATA, entry_points.txt) under ``site``."""
    info = site / f"{dist}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    lines = ["[tagteller]"]
    for entry_point, (module, source) in sources.items():
        (site / f"{module}.py").write_text(source.replace("MODEL_PATH", repr(str(model))))
        lines.append(f"{entry_point} = {module}")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugin-site")
    model = colour_model(folder / "leaves.onnx", domain="leaves")
    return write_distribution(folder / "site", "tagteller_isolation_fixtures", PLUGIN_SOURCES, model)


def _forget_fixture_modules() -> None:
    for name in [m for m in sys.modules if m.startswith("tt_iso_")]:
        del sys.modules[name]


@pytest.fixture
def installed(site, monkeypatch) -> Path:
    """The fixture distribution is importable and its entry points visible, for this test only."""
    _forget_fixture_modules()
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    yield site
    plugins.reset()
    _forget_fixture_modules()


@pytest.fixture
def green_photo(tmp_path) -> Path:
    path = tmp_path / "leaf.png"
    Image.new("RGB", (24, 24), (20, 220, 30)).save(path)
    return path


def failures_by_plugin() -> dict[str, tuple[str, str]]:
    return {f.plugin: (f.stage, f.error) for f in plugins.failures}


def duplicate_failure() -> tuple[str, str]:
    """(refused plugin, the plugin that kept 'shoes'): the pair's one warning, whichever won."""
    [(refused, error)] = [(f.plugin, f.error) for f in plugins.failures if "already registered" in f.error]
    assert refused in ("shoes", "zz-duplicate")
    kept = "shoes" if refused == "zz-duplicate" else "zz-duplicate"
    assert error == f"domain 'shoes' is already registered by plugin {kept!r}"
    return refused, kept


def test_each_broken_plugin_is_named_in_a_warning_and_skipped(installed, capsys):
    build_app()  # runs register_commands
    found = plugins.domains()
    assert set(found) == BUILTIN_DOMAINS | {"leaves"}
    assert "half-done" not in found  # what a failing hook registered before raising is dropped
    refused, kept = duplicate_failure()  # which one keeps the name: test_builtin_keeps_its_domain_name
    assert found["shoes"].plugin == kept
    failed = failures_by_plugin()
    assert set(failed) == set(EXPECTED_FAILURES) | {refused}
    err = capsys.readouterr().err
    assert f"warning: plugin {refused!r} failed in register_domains: domain 'shoes' is already registered" in err
    for name, (stage, words) in EXPECTED_FAILURES.items():
        assert failed[name][0] == stage and words in failed[name][1], (name, failed[name])
        [line] = [ln for ln in err.splitlines() if f"plugin {name!r} failed" in ln]
        assert line.startswith(f"warning: plugin {name!r} failed in {stage}: ") and line.endswith("; skipped")
    loaded = {row["name"] for row in plugins.plugin_table()}
    assert "import-error" not in loaded and "misspelled" not in loaded and "good" in loaded


def test_other_domains_still_scan(installed, green_photo):
    result = CliRunner().invoke(build_app(), ["scan", "--domain", "leaves", "-f", "jsonl", str(green_photo)])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["label"] == "green"
    listed = CliRunner().invoke(build_app(), ["plugins", "--json"])
    data = json.loads(listed.stdout)
    assert {f["plugin"] for f in data["failures"]} - {"shoes", "zz-duplicate"} == set(EXPECTED_FAILURES)
    assert {"good", "shoes"} <= {row["name"] for row in data["plugins"]}


def test_broken_plugins_in_a_real_process(site, green_photo, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(site), TAGTELLER_HOME=str(tmp_path / "home"))
    env.pop("TAGTELLER_PLUGINS", None)
    env.pop("TAGTELLER_QUIET_PLUGIN_WARNINGS", None)
    proc = subprocess.run([str(TAGTELLER), "scan", "--domain", "leaves", "-f", "jsonl", str(green_photo)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["label"] == "green"
    for name, (stage, _words) in EXPECTED_FAILURES.items():
        assert f"warning: plugin {name!r} failed in {stage}: " in proc.stderr, name
    assert "register_domains: domain 'shoes' is already registered by plugin " in proc.stderr
    assert "Traceback" not in proc.stderr


def test_allow_list_loads_only_the_named_plugins(installed, monkeypatch, green_photo):
    monkeypatch.setenv("TAGTELLER_PLUGINS", "good, shoes")
    plugins.reset()
    assert set(plugins.domains()) == {"leaves", "shoes"}
    assert plugins.failures == []
    assert "tt_iso_hook_error" not in sys.modules  # not on the list: never even imported
    result = CliRunner().invoke(build_app(), ["scan", "-d", "leaves", "-f", "jsonl", str(green_photo)])
    assert result.exit_code == 0 and json.loads(result.stdout)["label"] == "green"
    unlisted = CliRunner().invoke(build_app(), ["scan", "-d", "apparel", str(green_photo)])
    assert unlisted.exit_code == 2 and "unknown domain 'apparel'; known domains: leaves, shoes" in unlisted.stderr


def test_allow_list_with_a_broken_plugin_still_isolates_it(installed, monkeypatch):
    monkeypatch.setenv("TAGTELLER_PLUGINS", "import-error,good")
    plugins.reset()
    assert set(plugins.domains()) == {"leaves"}
    assert set(failures_by_plugin()) == {"import-error"}


def test_empty_allow_list_loads_nothing(installed, monkeypatch):
    monkeypatch.setenv("TAGTELLER_PLUGINS", "")
    plugins.reset()
    assert plugins.domains() == {}
    assert plugins.plugin_table() == [] and plugins.failures == []
    assert not any(m.startswith("tt_iso_") for m in sys.modules)


# -- plugins that once escaped isolation ---------------------------------------------------------

def test_builtin_keeps_its_domain_name(installed):
    found = plugins.domains()
    assert found["shoes"].plugin == "shoes" and found["shoes"].labels == ("adidas", "converse", "nike")
    assert duplicate_failure() == ("zz-duplicate", "shoes")


def test_domain_smuggled_past_validation_is_refused_with_a_warning(tmp_path, monkeypatch, capsys):
    source = HEADER + (
        "@tagteller.hookimpl\n"
        "def register_domains(register):\n"
        "    domain = Domain(name='innocent', description='x', labels=('a', 'b'))\n"
        "    object.__setattr__(domain, 'name', '../../escape')  # frozen dataclass, forced\n"
        "    register(domain)\n")
    site = write_distribution(tmp_path / "site", "tagteller_sneaky", {"sneaky": ("tt_iso_sneaky", source)})
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    try:
        found = plugins.domains()
    finally:
        _forget_fixture_modules()
    assert "shoes" in found and not any("escape" in name for name in found)
    assert failures_by_plugin()["sneaky"][0] == "register_domains"


def test_plugin_calling_sys_exit_at_import_is_skipped(tmp_path, monkeypatch):
    site = write_distribution(tmp_path / "site", "tagteller_exiter",
                              {"exiter": ("tt_iso_exiter", "import sys\nsys.exit(3)\n")})
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    try:
        found = plugins.domains()
    finally:
        _forget_fixture_modules()
    assert "shoes" in found
    assert failures_by_plugin()["exiter"][0] == "load"
