"""Safety net for moving modules around: every module under engine/, editor/, assets/ and bench/ imports, and
every name that engine/, editor/, bench/, tests/ and app.py import from the project (`from engine.x import y`,
`from ..scene import z`, `import engine.x`) exists where the import looks for it.

Modules are found by walking the tree, never listed, so the test holds for any layout. A module that needs a
package listed in requirements*.txt that is not installed here is skipped with that reason; a package no
requirements file lists is a failure. One fresh interpreter does all the importing (the test process keeps
its own modules; about 20 s, mostly torch, gradio and diffusers)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPORTED = ("engine", "editor", "assets", "bench")  # every module in these is imported
SCANNED = ("engine", "editor", "bench", "tests", "app.py")  # their imports from the project are checked
PROJECT = {"engine", "editor", "assets", "bench", "tests", "app"}
# requirement name -> the name it is imported by, where they differ
IMPORT_NAMES = {"pillow": "PIL"}


def _module_name(path: Path) -> str:
    """engine/io/ply.py -> engine.io.ply; engine/io/__init__.py -> engine.io."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _python_files(*tops: str) -> list[Path]:
    files = []
    for top in tops:
        path = ROOT / top
        files += [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def _modules() -> list[str]:
    return [_module_name(f) for f in _python_files(*IMPORTED)]


def _package_of(path: Path) -> list[str]:
    """The package a relative import in `path` starts from, as parts."""
    name = _module_name(path).split(".")
    return name if path.name == "__init__.py" else name[:-1]


def _project_imports() -> list[tuple[str, str, str | None]]:
    """(where "file:line", module, name or None) for every import of a project module in SCANNED, relative
    imports resolved. `name` None: the module itself must import (`import x.y`, `from x import *`)."""
    found = []
    for path in _python_files(*SCANNED):
        where = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=where)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(f"{where}:{node.lineno}", a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _package_of(path)[: len(_package_of(path)) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:
                    found.append((f"{where}:{node.lineno}", module, None if alias.name == "*" else alias.name))
    return [f for f in found if f[1].split(".")[0] in PROJECT]


def _requirements() -> set[str]:
    """Import names of every package the requirements files list."""
    names = set()
    for path in ROOT.glob("requirements*.txt"):
        for line in path.read_text().splitlines():
            match = re.match(r"\s*([A-Za-z0-9_.\-]+)", line.split("#")[0])
            if match and not line.lstrip().startswith("-"):
                name = match.group(1).lower().replace("-", "_")
                names.add(IMPORT_NAMES.get(name, name))
    return names


# Runs in the fresh interpreter: reads {"modules": [...], "imports": [[module, name], ...]} from argv[1], writes
# each outcome to argv[2]: null (fine), {"missing": package} or {"error": text}.
_CHILD = r'''
import importlib, json, sys, traceback

PROJECT = set(sys.argv[3].split(","))
todo = json.load(open(sys.argv[1]))


def outcome(exc):
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] not in PROJECT:
        return {"missing": exc.name.split(".")[0]}
    return {"error": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-12:])}


def attempt(fn):
    try:
        fn()
        return None
    except BaseException as exc:  # SystemExit at import is a failure too
        return outcome(exc)


modules = {m: attempt(lambda m=m: importlib.import_module(m)) for m in todo["modules"]}


def has(module, name):
    mod = importlib.import_module(module)
    if name is None or hasattr(mod, name):
        return
    try:
        importlib.import_module(f"{module}.{name}")  # a submodule not imported yet
    except ModuleNotFoundError as exc:
        if exc.name != f"{module}.{name}":
            raise
        raise ImportError(f"{module} has no name {name!r}") from None


imports = {f"{m}:{n}": attempt(lambda m=m, n=n: has(m, n)) for m, n in todo["imports"]}
json.dump({"modules": modules, "imports": imports}, open(sys.argv[2], "w"))
'''


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imports")
    todo = {"modules": _modules(), "imports": sorted({(m, n) for _, m, n in _project_imports()}, key=str)}
    (folder / "todo.json").write_text(json.dumps(todo))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(folder / "todo.json"), str(folder / "out.json"),
                           ",".join(sorted(PROJECT))], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0 and (folder / "out.json").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((folder / "out.json").read_text())


def _judge(result: dict | None, what: str) -> None:
    """Pass, skip (a listed package is not installed here) or fail, for one import outcome."""
    if result is None:
        return
    if "missing" in result:
        package = result["missing"]
        if package in _requirements():
            pytest.skip(f"{what} needs {package}, which requirements*.txt lists but is not installed here")
        pytest.fail(f"{what} imports {package}, which no requirements*.txt lists", pytrace=False)
    pytest.fail(f"{what} does not import:\n{result['error']}", pytrace=False)


def test_the_walk_finds_the_packages():
    modules = _modules()
    assert {m.split(".")[0] for m in modules} == set(IMPORTED) and len(modules) > 50
    assert len(_project_imports()) > 100


@pytest.mark.parametrize("module", _modules())
def test_module_imports(outcomes, module):
    _judge(outcomes["modules"][module], module)


def test_every_imported_project_name_exists(outcomes):
    """One failure lists every broken import with its file and line (a move breaks many at once)."""
    broken, missing = [], set()
    for where, module, name in _project_imports():
        result = outcomes["imports"][f"{module}:{name}"]
        if result is None:
            continue
        if "missing" in result and result["missing"] in _requirements():
            missing.add(result["missing"])  # that module's own test says so
            continue
        what = f"from {module} import {name}" if name else f"import {module}"
        reason = f"needs {result['missing']}" if "missing" in result else result["error"].strip().splitlines()[-1]
        broken.append(f"{where}: {what}: {reason}")
    if broken:
        pytest.fail(f"{len(broken)} broken project import(s):\n" + "\n".join(broken), pytrace=False)
    if missing:
        pytest.skip(f"imports from modules that need {', '.join(sorted(missing))} (not installed) not checked")
