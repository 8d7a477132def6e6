"""The house rules of the README's Architecture section, checked on the source (ast; nothing is imported):
layers only import downward, the engine's top level holds only data types, the editor reaches the engine only
through the modules the README names, and no module or class outgrows what a reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The engine's packages and top-level modules, lowest layer first. A module may import from its own layer or
# any layer below it; an import from a higher layer is a back arrow and must be listed in ALLOWED_UPWARD.
LAYERS = [
    {"scene", "camera", "up", "sh", "colour", "rotate"},  # data types and their conventions
    {"io", "render"},  # files in and out; drawing a scene
    {"guidance", "optimize", "masks"},  # diffusion priors and losses; what both loops share; selection/lifting
    {"edit", "generate"},  # the two jobs
    {"evaluate"},  # measuring an edit (uses edit's region and orbit)
    {"worker"},  # the service thread behind the app
    {"batch", "cli", "__main__"},  # many jobs; the command line
]
# Modules that sit lower than their package: pure math that imports nothing of the engine above the data types.
MODULE_LAYERS = {
    "evaluate.metrics": 0,  # PSNR, spills, floaters on tensors: the edit loop reports its PSNR vs the ideal with it
}
ALLOWED_UPWARD = {
    # A batch job is parsed with each command's own parser (one grammar for a job, on the CLI and in a JOBS file).
    ("batch", "cli"),
}
TOP_LEVEL_MODULES = {"__init__", "__main__", "scene", "camera", "up", "sh", "colour", "rotate"}
# What editor/ may import from the engine, and why (the README's Architecture section says the same).
EDITOR_MAY_IMPORT = {
    "engine.scene", "engine.camera", "engine.up", "engine.rotate",  # the data it shows and turns
    "engine.io",  # opening and saving files, up detected from a file
    "engine.render",  # display renders on the UI's threads (CPU; the worker owns the device for jobs)
    "engine.masks.ops", "engine.masks.pick", "engine.masks.selection", "engine.masks.parts",  # light CPU tools
    "engine.masks.tasks",  # SAM click / text selection bodies the worker runs as tasks
    "engine.masks.sam",  # the one SAM loader the tasks use, and its missing-checkpoint message
    "engine.masks.compositing",  # tinted views recolour an image from each Gaussian's share of its pixels
    "engine.guidance",  # model specs, availability, the default model
    "engine.edit", "engine.generate",  # configs and input checks (the runners' GPU functions also run them)
    "engine.worker",  # the service: commands in, events out
    "engine.colour",  # one colour grammar
}
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 300
SIZE_EXCEPTIONS = {
    # numba kernels: one tile rasterizer forward + backward, kept together so the two passes stay in step
}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; relative imports resolved), anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:  # `from . import drawing` imports the submodule; `from .x import f`, x
                sub = f"{module}.{alias.name}"
                found.add(sub if _is_module(sub) else module)
    return found


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").exists()


def _layer(unit: str) -> int:
    if unit in MODULE_LAYERS:
        return MODULE_LAYERS[unit]
    for index, members in enumerate(LAYERS):
        if unit in members:
            return index
    raise AssertionError(f"engine.{unit} is in no layer: add it to LAYERS (and to the README)")


def _unit(module: str) -> str | None:
    """engine.edit.loop -> "edit"; a module listed in MODULE_LAYERS is its own unit."""
    parts = module.split(".")
    if parts[0] != "engine" or len(parts) < 2:
        return None
    return ".".join(parts[1:3]) if ".".join(parts[1:3]) in MODULE_LAYERS else parts[1]


def test_the_engine_never_imports_the_ui():
    for path in _modules("engine"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("editor", "app", "gradio", "viser")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_engine_layers_import_only_downward():
    upward = []
    for path in _modules("engine"):
        here = _unit(_name(path)) or "__init__"
        if here == "__init__":
            continue
        for module in _imports(path):
            there = _unit(module)
            if there is None or there == here or module.split(".")[0] != "engine":
                continue
            if not _is_module("engine." + there):
                continue  # a name imported from engine/__init__.py, not a module
            if _layer(there) > _layer(here) and (here, there) not in ALLOWED_UPWARD:
                upward.append(f"{path.relative_to(ROOT)} -> {module}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_guidance_never_imports_the_renderer():
    """Losses take images, not scenes: a prior that needs a render is handed a render function."""
    for path in _modules("engine/guidance"):
        bad = {m for m in _imports(path) if m.startswith("engine.render") or m.startswith("engine.edit")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_engines_top_level_holds_only_data_types_and_packages():
    loose = {p.stem for p in (ROOT / "engine").glob("*.py")} - TOP_LEVEL_MODULES
    assert not loose, f"loose top-level modules in engine/: {sorted(loose)} (give them a package)"


def test_the_editor_reaches_the_engine_only_through_the_named_modules():
    bad = []
    for path in _modules("editor") + [ROOT / "app.py"]:
        for module in _imports(path):
            if module.split(".")[0] != "engine" or module == "engine":
                continue
            if not any(module == allowed or module.startswith(allowed + ".") for allowed in EDITOR_MAY_IMPORT):
                bad.append(f"{path.relative_to(ROOT)} -> {module}")
    assert not bad, "editor imports outside the README's list:\n" + "\n".join(sorted(set(bad)))


def test_no_import_cycle_between_engine_packages():
    graph: dict[str, set[str]] = {}
    for path in _modules("engine"):
        here = _unit(_name(path))
        if here is None:
            continue
        for module in _imports(path):
            there = _unit(module)
            if there and there != here and _is_module("engine." + there):
                if (here, there) not in ALLOWED_UPWARD:
                    graph.setdefault(here, set()).add(there)

    def visit(node, stack, seen):
        if node in stack:
            return stack[stack.index(node):] + [node]
        if node in seen:
            return None
        seen.add(node)
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt, stack + [node], seen)
            if cycle:
                return cycle
        return None

    seen: set[str] = set()
    for start in sorted(graph):
        cycle = visit(start, [], seen)
        assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("package", ["engine", "editor"])
def test_modules_and_classes_stay_readable(package):
    too_big = []
    for path in _modules(package):
        rel = str(path.relative_to(ROOT))
        if rel in SIZE_EXCEPTIONS:
            continue
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            too_big.append(f"{rel}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                too_big.append(f"{rel}: class {node.name} {node.end_lineno - node.lineno + 1} lines")
    assert not too_big, "\n".join(too_big)
