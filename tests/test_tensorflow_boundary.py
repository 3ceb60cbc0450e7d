"""``tagteller/train/`` means exactly "imports tensorflow": checked both ways.

- No module outside it (the core, the CLI, the shipped plugins) imports tensorflow, keras or
  tf2onnx, not even lazily inside a function; and importing every core module together leaves
  tensorflow unloaded (so nothing reaches it through a chain of top-level imports).
- Every module under it imports tensorflow (or keras, or tf2onnx), directly or through a sibling,
  lazily or not: a module that does not belongs in the core, where an install without the
  ``train`` extra can use it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tagteller"
TRAIN = PACKAGE / "train"
PLUGINS = ROOT / "plugins"
TENSORFLOW = {"tensorflow", "keras", "tf2onnx"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module an ``import`` anywhere in ``path`` names (top level and inside functions),
    with ``from X import Y`` giving both ``X`` and ``X.Y`` (``Y`` may be a submodule)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    return names_in(path.read_text(encoding="utf-8"), package)


def names_in(source: str, package: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def imports_tensorflow_directly(path: Path) -> bool:
    return any(name.split(".")[0] in TENSORFLOW for name in imported_names(path))


def core_files() -> list[Path]:
    files = [p for p in PACKAGE.rglob("*.py") if TRAIN not in p.parents]
    return sorted(files + list(PLUGINS.rglob("*.py")))


def test_the_parser_sees_lazy_and_relative_imports():
    """The checks below can only find what this parser finds."""
    source = ("import os\n"
              "def f():\n    from keras import layers\n"
              "class C:\n    def g(self):\n        from . import model\n        from ..engine import Engine\n")
    assert names_in(source, "tagteller.train") == {
        "os", "keras", "keras.layers", "tagteller.train", "tagteller.train.model", "tagteller.engine",
        "tagteller.engine.Engine"}
    assert "tagteller.train.trainer" in imported_names(PACKAGE / "cli" / "train.py")  # inside the command
    assert imports_tensorflow_directly(TRAIN / "pipeline.py")  # tensorflow only inside functions


def test_no_module_outside_train_imports_tensorflow():
    offenders = [str(p.relative_to(ROOT)) for p in core_files() if imports_tensorflow_directly(p)]
    assert offenders == [], f"import tensorflow/keras/tf2onnx only under tagteller/train/: {offenders}"


def test_importing_every_core_module_leaves_tensorflow_unloaded():
    modules = [module_name(p) for p in core_files() if p.parent != PLUGINS and p.name != "__main__.py"]
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(TENSORFLOW)!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(modules) > 40  # the whole core, not an empty list
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_every_module_under_train_needs_tensorflow():
    """Directly, or through a sibling it imports; ``__init__`` only marks the package (and keeps
    tensorflow's start-up chatter down) and imports nothing."""
    files = {module_name(p): p for p in TRAIN.glob("*.py") if p.name != "__init__.py"}
    needs = {name for name, path in files.items() if imports_tensorflow_directly(path)}
    changed = True
    while changed:
        changed = False
        for name, path in files.items():
            if name not in needs and imported_names(path) & needs:
                needs.add(name)
                changed = True
    assert sorted(set(files) - needs) == [], "these need no tensorflow: move them out of tagteller/train/"
    assert imported_names(TRAIN / "__init__.py") & set(files) == set()
