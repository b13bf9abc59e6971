"""Real helper processes for live tests: Python children that open sockets and report their ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["python_child", "run_loopscope", "stop_process"]


@contextmanager
def python_child(
    code: str, *, prefix: list[str] | None = None, timeout_s: float = 10
) -> Iterator[tuple[subprocess.Popen[str], dict]]:
    """Run ``code`` in a new Python process; it must print one JSON line when its sockets are ready,
    then it blocks on stdin until the test ends (its stdin is closed and it is killed)."""
    body = textwrap.dedent(code) + "\nimport sys as _s\n_s.stdin.read()\n"
    proc = subprocess.Popen(
        [*(prefix or []), sys.executable, "-c", body],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child exited early with {proc.wait(timeout_s)}")
        yield proc, json.loads(line)
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.kill()
        proc.wait(timeout_s)


def run_loopscope(
    *args: str, prefix: list[str] | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (``python -m loopscope``) and capture its output.

    ``COLUMNS`` is not passed on: a parent that loaded readline (pytest does) exports COLUMNS=80, and
    the CLI honours a user's COLUMNS even in a pipe; a test that wants a width sets it in ``prefix``.
    """
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "loopscope", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
    )


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 10 s; reaps the process. No-op when it has exited."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
