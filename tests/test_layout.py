"""The package's layout: imports run one way, no cycles, no hidden imports, modules one can read.

The import graph is read from the source (an AST walk), so a cycle or a layer violation is
caught even where Python would happen to import the modules in a working order; then every
module is imported alone in a fresh interpreter, which is what a learner's first line does.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "krypton"

# The layers of the package, lowest first: a module may import only from its own layer or
# below (seam -> machine -> tuning -> kernels -> backends -> autograd -> nn/optim -> data ->
# train, with the commands and figures on top).
LAYERS = [
    {"krypton.checks", "krypton.files"},
    {"krypton.seam"},
    {"krypton.machine"},
    {"krypton.tuning", "krypton.blocking"},
    {"krypton.kernels", "krypton.fused"},
    {"krypton.timing"},
    {"krypton.backends"},
    {"krypton.autograd", "krypton.autograd.engine", "krypton.autograd.ops",
     "krypton.autograd.functions", "krypton.autograd.conv"},
    {"krypton.nn", "krypton.nn.modules", "krypton.nn.functional", "krypton.optim"},
    {"krypton.batches", "krypton.data"},
    {"krypton.train", "krypton.train.model", "krypton.train.history", "krypton.train.loop",
     "krypton.train.twin", "krypton.train.compare", "krypton.train.report",
     "krypton.train.cli", "krypton.train.__main__"},
    {"krypton.bench", "krypton.plotting", "krypton.ablation", "krypton.autotune",
     "krypton.notebook", "krypton.cachesim", "krypton.site", "krypton.colab",
     "krypton.exercises"},
    {"krypton"},
]
LAYER = {name: index for index, layer in enumerate(LAYERS) for name in layer}
LARGEST_MODULE_LINES = 650


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(node: ast.AST) -> list[str]:
    """The package modules an import statement names (``from krypton import data`` names
    ``krypton.data``; ``from krypton.kernels import KERNELS`` names ``krypton.kernels``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "krypton"]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
            and node.module.split(".")[0] == "krypton":
        found = []
        for alias in node.names:
            child = f"{node.module}.{alias.name}"
            found.append(child if child in MODULES else node.module)
        return found
    return []


def top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {name for node in tree.body for name in imported_modules(node)}


GRAPH = {name: top_level_imports(path) - {name} for name, path in MODULES.items()}


def test_every_module_has_a_layer():
    assert sorted(set(MODULES) - set(LAYER)) == []


def test_imports_run_one_way_down_the_layers():
    upward = [f"{name} (layer {LAYER[name]}) imports {target} (layer {LAYER[target]})"
              for name, targets in GRAPH.items() for target in sorted(targets)
              if LAYER[target] > LAYER[name]]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    state: dict[str, str] = {}
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(GRAPH.get(name, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_function_imports_a_package_module():
    hidden = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if imported_modules(inner) or (isinstance(inner, ast.ImportFrom)
                                                   and inner.level > 0):
                        hidden.append(f"{name}.{node.name} (line {inner.lineno})")
    assert hidden == []


def test_every_module_is_short_enough_to_read_in_one_sitting():
    lengths = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in lengths.items() if n > LARGEST_MODULE_LINES} == {}


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}


@pytest.mark.parametrize("name", sorted(set(MODULES) - {"krypton.train.__main__"}))
def test_each_module_imports_alone_in_a_fresh_interpreter(name):
    result = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                            text=True, cwd=ROOT, env=_environment(), timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", [["-m", "krypton.train"], ["-m", "krypton.bench"],
                                     ["-m", "krypton.autotune"], ["build.py"]])
def test_every_command_answers_help(command):
    result = subprocess.run([sys.executable, *command, "--help"], capture_output=True,
                            text=True, cwd=ROOT, env=_environment(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
