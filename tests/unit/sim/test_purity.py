"""The pure parts of sim (closed forms, statistics, scenarios, results) import no I/O, clock or UI."""

import ast
from pathlib import Path

import pytest

import loopscope.sim

SIM = Path(loopscope.sim.__file__).parent
FORBIDDEN = {
    "socket",
    "subprocess",
    "os",
    "time",
    "rich",
    "typer",
    "shutil",
    "select",
    "threading",
    "asyncio",
    "http",
    "matplotlib",
    "simpy",
    "numpy",
    "random",
}


@pytest.mark.parametrize("module", ["formulas.py", "stats.py", "scenario.py", "result.py"])
def test_pure_module_imports(module):
    tree = ast.parse((SIM / module).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & FORBIDDEN
