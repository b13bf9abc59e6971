"""Layer contract: the pure modules import no I/O, clock, printing or CLI modules; __all__ is true.

"Pure" means every module under ``model/``, ``analysis/`` (all subpackages) and ``render/``, plus every
module anywhere whose docstring says it is pure (``(pure)``, ``(pure: ...``, ``Pure: values only``...).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import loopscope

SRC = Path(loopscope.__file__).parent
PURE_DIRS = ("model", "analysis", "render")
FORBIDDEN = {
    # I/O, processes, clock, threads
    "socket",
    "subprocess",
    "os",
    "time",
    "shutil",
    "select",
    "selectors",
    "ctypes",
    "threading",
    "multiprocessing",
    "asyncio",
    "signal",
    "fcntl",
    "mmap",
    "http.client",
    "http.server",
    "urllib.request",
    "psutil",
    # printing and front-ends
    "rich",
    "typer",
    "textual",
    # unseeded randomness and heavy optional extras (sim's pure modules take seeds and stay stdlib)
    "random",
    "numpy",
    "matplotlib",
    "simpy",
}
FORBIDDEN_LOOPSCOPE = ("loopscope.backends", "loopscope.collect")
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "__import__"}

# "(pure)", "(pure: values in...", "(pure, no I/O)", "Pure: values only", "pure)" - not "pure Python",
# "the pure half" or "X is pure (:func:...)" (a module that only says part of it is pure).
CLAIMS_PURE = re.compile(r"\(pure\b|\bpure[:,)]", re.IGNORECASE)


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _all_modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _claims_pure(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return bool(CLAIMS_PURE.search(doc))


def pure_modules() -> list[Path]:
    """Every module the contract covers: the pure folders and every module that claims purity."""
    out = {p for p in _all_modules() if p.relative_to(SRC).parts[0] in PURE_DIRS}
    out |= {p for p in _all_modules() if _claims_pure(p)}
    return sorted(out)


def _resolve(node: ast.ImportFrom, path: Path) -> str:
    if node.level == 0:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _violations(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, path)
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_CALLS
        ):
            yield f"{node.lineno}: calls {node.func.id}()"
        for name in targets:
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                yield f"{node.lineno}: imports {name}"
                break
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_LOOPSCOPE):
                yield f"{node.lineno}: imports {name}"
                break


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_pure_module_does_no_io(path: Path) -> None:
    bad = [f"{path.relative_to(SRC)}:{v}" for v in _violations(path)]
    assert not bad, "\n".join(bad)


def test_contract_covers_the_pure_folders_and_every_claim() -> None:
    covered = pure_modules()
    names = {_module_name(p) for p in covered}
    for folder in PURE_DIRS:
        assert f"loopscope.{folder}" in names
    # the modules that say so outside the pure folders (a claim that is dropped must be dropped on purpose)
    assert {
        "loopscope.sim.formulas",
        "loopscope.sim.result",
        "loopscope.sim.scenario",
        "loopscope.watch.view",
    } <= names


def test_the_checker_catches_io(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os.path\nfrom socket import socket\nimport urllib.parse\nfrom http import HTTPStatus\n"
        "def f():\n    import time\n    print(open('x'))\n"
        "from loopscope.collect import Collector\nfrom urllib.request import urlopen\n"
    )
    assert sorted(int(v.split(":")[0]) for v in _violations(bad)) == [1, 2, 6, 7, 7, 8, 9]


def test_relative_imports_resolve() -> None:
    node = ast.parse("from ..backends import linux").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _resolve(node, SRC / "analysis" / "scope.py") == "loopscope.backends"


def test_all_names_exist() -> None:
    missing = []
    for mod in pkgutil.walk_packages([str(SRC)], "loopscope."):
        if ".cli" in mod.name or mod.name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(mod.name)
        except ImportError as exc:
            if exc.name in ("simpy", "matplotlib", "gunicorn", "waitress"):
                continue  # an optional extra that is not installed
            raise
        for name in getattr(module, "__all__", []):
            if not hasattr(module, name):
                missing.append(f"{mod.name}.{name}")
    assert not missing
