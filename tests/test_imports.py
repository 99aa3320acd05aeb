"""The package's layering, read from the source (AST, lazy imports inside functions included): the core
simulator imports no higher layer, every layer imports only the layers below it, and no module imports itself
back through a cycle. docs/ARCHITECTURE.md draws the same layers."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "hwnas"

# layer -> what it may import (besides itself); a module's layer is its first package below hwnas
BASE = {"hwnas", "hwnas.errors", "hwnas.io_utils", "hwnas.cache", "hwnas.limits"}
ALLOWED = {
    "base": set(),
    "sim": {"base"},
    "arch": {"base", "sim"},
    "data": {"base"},
    "run_folder": {"base", "arch"},
    "hw_models": {"base", "sim", "arch", "data"},
    "metrics": {"base", "sim"},
    "report": {"base", "run_folder"},
    "train": {"base", "sim", "arch", "data", "hw_models", "run_folder", "metrics", "export"},
    "imported": {"base", "sim", "arch", "data", "hw_models", "run_folder", "metrics", "export", "train"},
    "search": {"base", "sim", "arch", "data", "hw_models", "run_folder", "train"},
    "compress": {"base", "sim", "arch", "data", "hw_models", "run_folder", "train", "metrics"},
    "export": {"base", "sim", "arch"},
    "deploy": {"base", "sim", "arch", "data", "export", "hw_models"},
    "commands": {"base", "sim", "arch", "data", "run_folder", "hw_models", "train", "imported", "search", "compress",
                 "export", "deploy", "metrics", "report", "commands", "cli"},
    "api": {"base", "sim", "arch", "data", "run_folder", "hw_models", "train", "imported", "search", "compress",
            "export", "deploy", "metrics", "report"},
    "cli": {"base", "commands"},
    "__main__": {"cli"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    return module.split(".")[1]


def imported_modules(module: str, path: Path) -> set[str]:
    """Every hwnas module ``module`` imports, wherever in the file the import statement stands."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "hwnas")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "hwnas":
                continue
            for alias in node.names:  # `from pkg import mod` imports a module when one has that name
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
    return {m for m in found if m in MODULES and m != module}


GRAPH = {module: imported_modules(module, path) for module, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports_only_lower_layers(module):
    own = layer(module)
    wrong = sorted(m for m in GRAPH[module] if layer(m) != own and layer(m) not in ALLOWED[own])
    assert not wrong, f"{module} (layer {own}) imports {wrong}"


def test_the_core_imports_no_higher_layer():
    core = [m for m in MODULES if layer(m) == "sim"]
    assert len(core) >= 10
    for module in core:
        assert {layer(m) for m in GRAPH[module]} <= {"sim", "base"}, module


def test_no_module_cycle():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module)


def test_the_command_line_imports_neither_torch_nor_lava():
    code = ("import sys, hwnas.cli; hwnas.cli.build_parser(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lava'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
