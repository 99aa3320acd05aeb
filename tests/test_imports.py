"""The package's layering, read from the source (AST, lazy imports inside functions included): the core
simulator imports no higher layer, every layer imports only the layers below it, and no module imports itself
back through a cycle. docs/ARCHITECTURE.md draws the same layers."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "hwnas"

# The layers, lowest first: a module may import its own layer and the layers before it in this order, never one
# after it (an upward import). A module's layer is its first package below hwnas; the package root is the top
# layer, which re-exports the Python API, and no module imports it.
LAYERS = ("base", "sim", "arch", "data", "run_folder", "hw_models", "metrics", "formats", "training", "nas",
          "compression", "backends", "html_report", "api", "commands", "cli", "__main__", "hwnas")
BASE = {"hwnas.errors", "hwnas.io_utils", "hwnas.cache", "hwnas.limits", "hwnas.version", "hwnas.progress"}
# what each layer imports in fact, narrower than everything below it (e.g. the formats never read hardware models)
ALLOWED = {
    "base": set(),
    "sim": {"base"},
    "arch": {"base", "sim"},
    "data": {"base"},
    "run_folder": {"base", "arch"},
    "hw_models": {"base", "sim", "arch", "data"},
    "metrics": {"base", "sim"},
    "formats": {"base", "sim", "arch"},
    "training": {"base", "sim", "arch", "data", "hw_models", "run_folder", "metrics", "formats"},
    "nas": {"base", "sim", "arch", "data", "hw_models", "run_folder", "training"},
    "compression": {"base", "sim", "arch", "data", "hw_models", "run_folder", "training", "metrics"},
    "backends": {"base", "sim", "arch", "data", "formats", "hw_models"},
    "html_report": {"base", "run_folder"},
    "api": {"base", "sim", "arch", "data", "run_folder", "hw_models", "training", "nas", "compression", "formats",
            "backends", "metrics", "html_report"},
    "commands": {"base", "sim", "arch", "data", "run_folder", "hw_models", "training", "nas", "compression",
                 "formats", "backends", "metrics", "html_report", "api"},
    "cli": {"base", "commands"},
    "__main__": {"cli"},
    "hwnas": {"base", "api"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    return module.split(".")[1] if "." in module else module


def imported_modules(module: str, path: Path) -> set[str]:
    """Every hwnas module ``module`` imports, wherever in the file the import statement stands."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)  # importlib.import_module("hwnas.x") imports as an import statement does
        elif isinstance(node, ast.Import):
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


def upward_imports() -> list[tuple[str, str]]:
    """Every (importer, imported) pair whose imported module sits in a later layer than its importer."""
    return sorted((module, target) for module, targets in GRAPH.items() for target in targets
                  if LAYERS.index(layer(target)) > LAYERS.index(layer(module)))


def test_the_allowed_imports_run_downward_only():
    assert set(ALLOWED) == set(LAYERS) and {layer(m) for m in MODULES} <= set(LAYERS)
    for own, allowed in ALLOWED.items():
        assert all(LAYERS.index(other) < LAYERS.index(own) for other in allowed), own


def test_no_import_runs_upward():
    assert upward_imports() == []


def test_no_module_imports_the_package_root():
    assert not [module for module, targets in GRAPH.items() if "hwnas" in targets]


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


def test_the_api_verbs_are_plain_functions_that_pickle():
    code = ("import pickle, types, hwnas; "
            "print(all(isinstance(getattr(hwnas, v), types.FunctionType) and pickle.loads(pickle.dumps(getattr(hwnas, v)))"
            " is getattr(hwnas, v) for v in ('search', 'train', 'compress', 'export', 'deploy', 'validate', 'report')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


if __name__ == "__main__":  # the layer check's figures: python tests/test_imports.py
    edges = sum(len(targets) for targets in GRAPH.values())
    print(f"{len(MODULES)} modules, {edges} imports between them (lazy ones and import_module calls included)")
    for name in LAYERS:
        members = sorted(m for m in MODULES if layer(m) == name)
        below = sorted({layer(t) for m in members for t in GRAPH[m]} - {name}, key=LAYERS.index)
        print(f"  {name:12s} {len(members):3d} modules, imports {', '.join(below) or '-'}")
    print(f"imports that run upward: {len(upward_imports())}")
    for module, target in upward_imports():
        print(f"  {module} -> {target}")
