"""The layering docs/design.md states: benchmarks -> study -> search_spaces -> trainables, nothing
imports upward, and Ray appears in one trainables module, so trainables/ and search_spaces/ run
with torch alone (the GPU machines have nothing else).

Two checks, because each misses what the other sees: every import statement, also those inside
functions (read from the source), and what importing each module really loads (every module
imported, one after another, in a fresh interpreter, which also proves that each one imports).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("trainables", "search_spaces", "study", "benchmarks")  # lowest layer first
MAY_IMPORT = {package: set(PACKAGES[: i + 1]) for i, package in enumerate(PACKAGES)}
RAY_MODULE = "trainables.trainable"  # the one module below study/ that may import Ray


def modules(package: str) -> list[str]:
    """The dotted names of every module of `package`, the package itself first."""
    names = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names, key=lambda name: (name.count("."), name))


def ray_free(module: str) -> bool:
    return module.split(".")[0] in ("trainables", "search_spaces") and module != RAY_MODULE


def source(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imports(module: str) -> set[str]:
    """Every module name an import statement of `module` names, anywhere in the file
    (relative imports resolved; `from a import b` also counts as `a.b`)."""
    path = source(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            origin = ".".join([*base, node.module] if node.level else [node.module or ""])
            names.add(origin.strip("."))
            names.update(f"{origin.strip('.')}.{alias.name}" for alias in node.names)
    return names


def breaks_layering(importer: str, imported: str) -> bool:
    """Whether `importer` may not import `imported`: a package above its own, or Ray (directly or
    through trainables.trainable) from a module that must run with torch alone."""
    top = imported.split(".")[0]
    if top in PACKAGES and top not in MAY_IMPORT[importer.split(".")[0]]:
        return True
    ray = top == "ray" or imported == RAY_MODULE or imported.startswith(RAY_MODULE + ".")
    return ray and ray_free(importer)


def every_module() -> list[str]:
    return [module for package in PACKAGES for module in modules(package)]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_statement_breaks_the_layering(package: str):
    wrong = {
        module: sorted(name for name in imports(module) if breaks_layering(module, name))
        for module in modules(package)
    }
    assert {module: names for module, names in wrong.items() if names} == {}


LOADER = """
import importlib, json, sys
order, ray_free = json.loads(sys.argv[1])
found = {}
for module in order:
    importlib.import_module(module)
    if module in ray_free:
        loaded = [name for name in ("ray", "study", "search_spaces") if name in sys.modules]
        if module.startswith("search_spaces"):
            loaded = [name for name in loaded if name != "search_spaces"]
        if loaded:
            found[module] = loaded
            break  # what a later module loads is then no longer its own
print(json.dumps(found))
"""


def test_importing_each_module_loads_no_layer_above_it_and_ray_only_where_allowed():
    """trainables, then search_spaces (Ray-free modules first), then the rest: after each Ray-free
    module nothing of Ray, study or (for trainables) search_spaces may be loaded."""
    order = sorted(every_module(), key=lambda m: (not ray_free(m), PACKAGES.index(m.split(".")[0])))
    done = subprocess.run(
        [sys.executable, "-c", LOADER, json.dumps([order, [m for m in order if ray_free(m)]])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {}


def test_the_checks_see_every_package():
    """The lists above are read from the tree: a module in a new folder is checked too."""
    found = every_module()
    assert RAY_MODULE in found and "study.cli" in found and "search_spaces.common" in found
    assert len(found) > 60 and all(source(module).is_file() for module in found)
