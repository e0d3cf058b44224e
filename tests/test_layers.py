"""The package's layers only look down, and only the task objects know which task they serve.

Read from the source (no import needed): every ``import`` of a ``cenfusion`` module, where it
sits (module top or inside a function) and every comparison with a task's name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cenfusion"

# layer -> the layers it may import (itself always); the README's layout section in code
BELOW = {
    "nn": set(),
    "config": set(),
    "models": {"nn"},
    "convert": {"nn"},
    "data": set(),
    "metrics": {"nn"},
    "engine": {"nn", "config", "data", "metrics"},
    "analysis": {"nn", "models"},
    "compat": {"nn", "models", "convert"},
    "tasks": {
        "nn",
        "config",
        "models",
        "convert",
        "data",
        "metrics",
        "engine",
        "analysis",
        "compat",
    },  # fmt: skip
    "experiments": {"nn", "config", "models", "engine", "analysis", "tasks"},
    "export": {"tasks", "models", "engine"},
    "docgen": {"config", "models", ""},
    "cli": {
        "",
        "nn",
        "config",
        "data",
        "engine",
        "analysis",
        "compat",
        "tasks",
        "experiments",
        "export",
    },  # fmt: skip
    "": {"nn", "convert", "models", "engine", "tasks"},  # cenfusion/__init__.py
    "__main__": {"cli"},
}
# imports allowed inside functions: optional packages, looked up only when used
OPTIONAL = {"torch.utils.tensorboard", "triton", "benchmarks.run", "matplotlib",
            "matplotlib.backends.backend_agg", "matplotlib.figure", "h5py",
            "scipy.io"}  # fmt: skip


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("cenfusion", *parts)).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return []


MODULES = modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_look_down(module):
    own = layer(module)
    allowed = BELOW[own] | {own}
    for node in ast.walk(MODULES[module]):
        for target in imported(node):
            if target.startswith("cenfusion"):
                assert layer(target) in allowed, f"{module} imports {target}"


def test_the_data_subpackages_do_not_import_each_other():
    for module, tree in MODULES.items():
        if module.startswith("cenfusion.data."):
            kind = module.split(".")[2]
            for node in ast.walk(tree):
                for target in imported(node):
                    parts = target.split(".")
                    if target.startswith("cenfusion.data.") and len(parts) > 3:
                        assert parts[2] in (kind, "io"), f"{module} imports {target}"


def test_imports_sit_at_module_top_unless_they_guard_an_optional_package():
    for module, tree in MODULES.items():
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    for target in imported(node):
                        assert target in OPTIONAL, f"{module}.{function.name} imports {target}"


TASK_NAMES = re.compile(r"""[=!]=\s*["'](segmentation|translation)["']""")


def test_only_the_task_objects_branch_on_the_task():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "tasks" in path.relative_to(PACKAGE).parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not TASK_NAMES.search(line), f"{path.relative_to(PACKAGE)}:{number}: {line}"


def test_the_rule_catches_an_upward_import():
    """The scan is not vacuous: an engine module importing a task would be reported."""
    tree = ast.parse("from cenfusion.tasks import get_task\n")
    targets = [t for node in ast.walk(tree) for t in imported(node)]
    assert [layer(t) for t in targets] == ["tasks"]
    assert "tasks" not in BELOW["engine"]
