"""Shared fixtures and markers: an isolated TAGTELLER_HOME per test, fresh plugin state, paths to
../shared, and the ``train`` and ``shared`` markers applied from what each test's code uses.

Markers are not written by hand (a hand-written one is forgotten): at collection,
:func:`pytest_collection_modifyitems` reads the code a test runs (its function, the fixtures it
asks for, the module-level helpers they call, and its module's imports) and marks

- ``train`` when that code imports tensorflow, keras or tf2onnx, or a ``tagteller`` module that
  imports one of them at module level (found by reading the sources, without importing them);
  every ``train`` test is skipped when tensorflow is not installed;
- ``shared`` when that code uses ``SHARED``, ``SHARED_DATASETS`` or :func:`shared_dataset`
  (the ../shared datasets and weights).

A test that needs tensorflow only through a subprocess or the ``train`` command (which its code
cannot show) says so with ``@pytest.mark.train``; the skip follows from the marker either way.
So ``-m "not train"`` selects exactly what runs without the [train] extra.
"""

from __future__ import annotations

import ast
import dis
import functools
import importlib.util
import inspect
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from tagteller import plugins

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SHARED_DATASETS = SHARED / "datasets"

#: Third-party packages of the [train] extra whose import means "needs tensorflow".
TENSORFLOW_PACKAGES = frozenset({"tensorflow", "keras", "tf2onnx", "tf_keras"})
#: Names through which a test reaches ../shared.
SHARED_NAMES = frozenset({"SHARED", "SHARED_DATASETS", "shared_dataset"})


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own user folders and a freshly loaded plugin manager."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TAGTELLER_HOME", str(home))
    monkeypatch.delenv("TAGTELLER_PLUGINS", raising=False)
    plugins.reset()
    yield home
    plugins.reset()


def has_tensorflow() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def shared_dataset(name: str) -> Path:
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"../shared/datasets/{name} is not present on this machine")
    return path


# -- markers from the code a test runs ---------------------------------------------------------

def _module_level_imports(source: str) -> Iterator[tuple[str, int, list[str]]]:
    """(module, level, imported names) of each import run when the module is imported: not those
    inside functions or classes, nor under ``if TYPE_CHECKING``."""
    def walk(body: list[ast.stmt]) -> Iterator[tuple[str, int, list[str]]]:
        for node in body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name, 0, []
            elif isinstance(node, ast.ImportFrom):
                yield node.module or "", node.level, [alias.name for alias in node.names]
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                    yield from walk(block)
            elif isinstance(node, ast.With):
                yield from walk(node.body)
    yield from walk(ast.parse(source).body)


@functools.cache
def tensorflow_modules() -> frozenset[str]:
    """The ``tagteller`` modules that import tensorflow (directly or through each other) when
    imported, read from their sources."""
    package_root = REPO / "tagteller"
    imports: dict[str, set[str]] = {}
    for path in package_root.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if parts[-1] == "__init__" else name.rpartition(".")[0]
        found = imports.setdefault(name, set())
        for module, level, names in _module_level_imports(path.read_text(encoding="utf-8")):
            if level:
                base = package.rsplit(".", level - 1)[0] if level > 1 else package
                module = f"{base}.{module}" if module else base
            found.add(module)
            found.update(f"{module}.{n}" for n in names)  # `from package import module`
    heavy = set()
    changed = True
    while changed:
        changed = False
        for name, deps in imports.items():
            if name not in heavy and any(_is_tensorflow(d, heavy) for d in deps):
                heavy.add(name)
                changed = True
    return frozenset(heavy)


def _is_tensorflow(module: str, heavy: set[str] | frozenset[str]) -> bool:
    return module.split(".")[0] in TENSORFLOW_PACKAGES or module in heavy


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _imported_modules(code: types.CodeType) -> Iterator[str]:
    """Every module an ``import`` in this code object names, with ``from m import x`` also as
    ``m.x`` (x may be a submodule)."""
    current = None
    for instruction in dis.get_instructions(code):
        if instruction.opname == "IMPORT_NAME":
            current = instruction.argval
            yield current
        elif instruction.opname == "IMPORT_FROM" and current:
            yield f"{current}.{instruction.argval}"


def _test_functions(item: pytest.Item) -> Iterator[types.FunctionType]:
    """The test function and the fixture functions defined in this test suite that it uses."""
    function = getattr(item, "function", None)
    if isinstance(function, types.MethodType):
        function = function.__func__
    if isinstance(function, types.FunctionType):
        yield function
    fixtureinfo = getattr(item, "_fixtureinfo", None)
    for definitions in (fixtureinfo.name2fixturedefs.values() if fixtureinfo else ()):
        for definition in definitions:
            func = inspect.unwrap(definition.func)
            if isinstance(func, types.FunctionType) and _ours(func.__module__):
                yield func


def _ours(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in ("tests", "tagteller")


def _functions_of(value: object) -> list[types.FunctionType]:
    """The functions behind a name: a function, or the methods of a class, of this project."""
    if isinstance(value, types.FunctionType) and _ours(value.__module__):
        return [value]
    if isinstance(value, type) and _ours(value.__module__):
        return [inspect.unwrap(f) for f in vars(value).values()
                if isinstance(inspect.unwrap(f), types.FunctionType)]
    return []


def _imported_value(module: str) -> object:
    """``tagteller.x.name`` as an object, imported when its module imports without tensorflow."""
    parent, _, name = module.rpartition(".")
    if not _ours(parent) or _is_tensorflow(parent, tensorflow_modules()):
        return None
    try:
        return getattr(importlib.import_module(parent), name, None)
    except ImportError:
        return None


@functools.cache
def _direct_uses(function: types.FunctionType) -> tuple[frozenset[str], frozenset[str], tuple[types.FunctionType, ...]]:
    """(modules imported, global names used, functions of this project named) by one function."""
    modules: set[str] = set()
    names: set[str] = set()
    callees: list[types.FunctionType] = []
    for code in _code_objects(function.__code__):
        for module in _imported_modules(code):
            modules.add(module)
            callees.extend(_functions_of(_imported_value(module)))
        for name in code.co_names:
            names.add(name)
            callees.extend(_functions_of(function.__globals__.get(name)))
    return frozenset(modules), frozenset(names), tuple(callees)


def code_uses(item: pytest.Item) -> tuple[set[str], set[str]]:
    """(modules imported, global names used) by the code the test runs: its function, its fixtures
    and, transitively, the functions and classes of this project (tests and tagteller) that they
    name or import. Its module's own imports count too."""
    modules: set[str] = set()
    names: set[str] = set()
    pending = list(_test_functions(item))
    seen: set[types.FunctionType] = set()
    while pending:
        function = pending.pop()
        if function in seen:
            continue
        seen.add(function)
        direct_modules, direct_names, callees = _direct_uses(function)
        modules |= direct_modules
        names |= direct_names
        pending.extend(callees)
    module = getattr(item, "module", None)
    for value in vars(module).values() if module else ():
        if isinstance(value, types.ModuleType):
            modules.add(value.__name__)
        elif isinstance(getattr(value, "__module__", None), str):
            modules.add(value.__module__)
    return modules, names


def needs_tensorflow(modules: set[str]) -> bool:
    """Whether code importing these modules needs tensorflow."""
    heavy = tensorflow_modules()
    return any(_is_tensorflow(m, heavy) for m in modules)


def pytest_collection_modifyitems(config, items):
    skip_train = pytest.mark.skip(reason="needs the [train] extra (tensorflow)")
    tensorflow_installed = has_tensorflow()
    for item in items:
        modules, names = code_uses(item)
        if item.get_closest_marker("train") is None and needs_tensorflow(modules):
            item.add_marker(pytest.mark.train)
        if item.get_closest_marker("shared") is None and names & SHARED_NAMES:
            item.add_marker(pytest.mark.shared)
        if not tensorflow_installed and item.get_closest_marker("train") is not None:
            item.add_marker(skip_train)
