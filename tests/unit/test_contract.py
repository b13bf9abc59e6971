"""Layer contract: the pure layers import no I/O, clock, printing or CLI modules; __all__ is true."""

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import loopscope

SRC = Path(loopscope.__file__).parent
PURE = ["model", "analysis", "checks", "render"]
FORBIDDEN = {
    "socket",
    "subprocess",
    "os",
    "time",
    "rich",
    "typer",
    "shutil",
    "select",
    "ctypes",
    "threading",
    "psutil",
}


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0], node.lineno
            if node.module.startswith("loopscope.backends") or node.module.startswith(
                "loopscope.collect"
            ):
                yield "loopscope.backends", node.lineno


@pytest.mark.parametrize("layer", PURE)
def test_pure_layers_do_no_io(layer):
    folder = SRC / layer
    bad = []
    for path in sorted(folder.rglob("*.py")):
        for name, lineno in _imports(path):
            if name in FORBIDDEN or name == "loopscope.backends":
                bad.append(f"{path.relative_to(SRC)}:{lineno} imports {name}")
    assert not bad, "\n".join(bad)


def test_all_names_exist():
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
