"""The linters and the type checker pass on the whole tree: ``ruff check``, ``ruff format --check`` and
``mypy`` (strict, config in pyproject.toml), each as its own subprocess from the repository root.

Skipped, with the reason, only when the tool is not installed (``pip install -e ".[test]"`` brings both).
mypy reuses ``.mypy_cache`` so a run after a small change takes about a second.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATHS = ["src", "tests", "perf"]


def _run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: pip install -e '.[test]'")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_ruff_check() -> None:
    done = _run("ruff", "check", "--no-fix", *PATHS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format() -> None:
    done = _run("ruff", "format", "--check", *PATHS)
    assert done.returncode == 0, done.stdout + done.stderr + "\nrun: ruff format src tests perf"


def test_mypy() -> None:
    done = _run("mypy")  # files, strictness and cache from [tool.mypy] in pyproject.toml
    assert done.returncode == 0, done.stdout + done.stderr
