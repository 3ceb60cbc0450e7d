"""One set of exit codes: :class:`tagteller.exitcodes.ExitCode`, and no bare numbers elsewhere."""

from __future__ import annotations

import ast

from typer.testing import CliRunner

from tagteller.cli import build_app
from tagteller.exitcodes import ExitCode
from tests.conftest import REPO


def test_the_codes_are_the_documented_ones():
    assert {code.name: int(code) for code in ExitCode} == {"OK": 0, "FAILED": 1, "USAGE_ERROR": 2, "INTERRUPTED": 130}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for code in ExitCode:
        assert f"| {int(code)} | `{code.name}` |" in readme


def test_no_command_exits_with_a_bare_number_or_its_own_constants():
    """typer.Exit, sys.exit and SystemExit take an ExitCode member (or a variable), never a literal
    number; no module defines EXIT_* constants of its own."""
    offenders = []
    for path in sorted((REPO / "tagteller").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, int):
                name = ast.unparse(node.func)
                if name in ("typer.Exit", "sys.exit", "SystemExit", "exit", "Exit"):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id.startswith("EXIT_"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.id}")
    assert not offenders, "\n".join(offenders)


def test_a_usage_error_exits_with_usage_error():
    result = CliRunner().invoke(build_app(), ["scan", "--domain", "no-such-domain", "x.jpg"])
    assert result.exit_code == ExitCode.USAGE_ERROR == 2
