"""The package's layers: each folder is one layer and imports only run downwards (or within the layer); and every
module has its mirror test file (tests/<layer>/test_<module>.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "monai_ext"
#: Bottom to top. Modules directly in the package (the CLI, ``__main__``) sit above every layer.
LAYERS = ("io", "networks", "transforms", "visualize", "data", "engines", "handlers", "apps")
TOP = len(LAYERS)


def layer_of(module: str) -> int:
    """Rank of a dotted ``monai_ext`` module name (``monai_ext.io.atomic`` -> 0)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in LAYERS:
        return TOP
    return LAYERS.index(parts[1])


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``monai_ext`` import in a file, at any depth (function-level imports included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("monai_ext")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("monai_ext"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, f"<relative import level {node.level}>"))
        elif dynamic_import(node).startswith("monai_ext"):
            found.append((node.lineno, dynamic_import(node)))
    return found


def dynamic_import(node: ast.AST) -> str:
    """The module named by ``importlib.import_module("...")`` or ``__import__("...")``; '' for any other node."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return ""
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    target = node.args[0].value
    return target if name in ("import_module", "__import__") and isinstance(target, str) else ""


def upward_imports(path: Path, module: str | None = None) -> list[str]:
    """Imports of ``path`` (the module ``module``, by default its own name) that reach a higher layer."""
    module = module or module_name(path)
    own = layer_of(module)
    bad = []
    for line, target in imported_modules(path):
        if target.startswith("<relative"):
            bad.append(f"{path.name}:{line} uses a relative import; write the absolute module so its layer shows")
        elif layer_of(target) > own:
            bad.append(f"{module}:{line} ({LAYERS[own] if own < TOP else 'top'}) imports {target} "
                       f"({LAYERS[layer_of(target)] if layer_of(target) < TOP else 'top'})")
    return bad


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_downwards(path: Path) -> None:
    assert upward_imports(path) == []


def test_every_folder_is_a_known_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(LAYERS)


@pytest.mark.parametrize(
    ("source", "expected_violation"),
    [
        ("from monai_ext.engines.base import autocast\n", True),  # io importing an engine
        ("import monai_ext.apps.crossval\n", True),
        ("def f():\n    from monai_ext.handlers.tracking import git_commit\n", True),  # hidden in a function
        ("from monai_ext.io.errors import root_cause\n", False),
        ("from . import atomic\n", True),
        ("import importlib\nimportlib.import_module('monai_ext.apps.crossval')\n", True),  # built at run time
        ("__import__('monai_ext.cli')\n", True),
        ("from importlib import import_module\nimport_module('monai_ext.io.errors')\n", False),
    ],
)
def test_checker_catches_upward_imports(tmp_path: Path, source: str, expected_violation: bool) -> None:
    """The checker itself can fail: a crafted lowest-layer module that imports upwards is reported."""
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    assert bool(upward_imports(probe, "monai_ext.io.probe")) is expected_violation


#: Modules without a mirror test file: package markers, and ``python -m monai_ext``, which tests/test_cli.py runs.
MIRROR_EXEMPT = ("__init__.py", "__main__.py")
TESTS = Path(__file__).resolve().parent


def mirror_of(source: Path, package: Path = PACKAGE, tests: Path = TESTS) -> Path:
    """The test file that mirrors a module: monai_ext/<layer>/<module>.py -> tests/<layer>/test_<module>.py
    (sub-packages likewise). Further files named test_<module>_<aspect>.py may sit beside it."""
    relative = source.relative_to(package)
    return tests / relative.parent / f"test_{relative.name}"


def missing_mirrors(package: Path = PACKAGE, tests: Path = TESTS) -> list[str]:
    return [f"{path.relative_to(package.parent)} has no {mirror_of(path, package, tests).relative_to(tests.parent)}"
            for path in sorted(package.rglob("*.py")) if path.name not in MIRROR_EXEMPT
            and not mirror_of(path, package, tests).is_file()]


def test_every_module_has_its_mirror_test_file() -> None:
    """Tests mirror the package: monai_ext/<layer>/<module>.py is tested in tests/<layer>/test_<module>.py."""
    assert missing_mirrors() == []


def test_the_mirror_check_names_a_removed_mirror(tmp_path: Path) -> None:
    """The checker itself can fail: a copy of the package and its tests with one mirror file removed is reported."""
    package, tests = tmp_path / "monai_ext", tmp_path / "tests"
    for source in SOURCES:
        copy = package / source.relative_to(PACKAGE)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.touch()
        if source.name not in MIRROR_EXEMPT:
            mirror = mirror_of(copy, package, tests)
            mirror.parent.mkdir(parents=True, exist_ok=True)
            mirror.touch()
    assert missing_mirrors(package, tests) == []
    (tests / "io" / "test_signals.py").unlink()
    (tests / "networks" / "checkpoints" / "test_adapt.py").unlink()
    assert missing_mirrors(package, tests) == [
        "monai_ext/io/signals.py has no tests/io/test_signals.py",
        "monai_ext/networks/checkpoints/adapt.py has no tests/networks/checkpoints/test_adapt.py",
    ]
