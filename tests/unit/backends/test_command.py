"""run_tool: output, or one line naming the tool and why there is none (real child processes)."""

from __future__ import annotations

import sys

from loopscope.backends.linux.command import run_tool


def test_output_of_a_tool() -> None:
    assert run_tool([sys.executable, "-c", "print('hello')"]) == ("hello\n", None)


def test_missing_tool() -> None:
    assert run_tool(["loopscope-no-such-tool"]) == (None, "loopscope-no-such-tool: not installed")


def test_failure_quotes_the_last_stderr_line() -> None:
    code = "import sys; sys.stderr.write('first\\nlast words\\n'); sys.exit(3)"
    out, err = run_tool([sys.executable, "-c", code])
    assert out is None and err == f"{sys.executable}: last words"
    out, err = run_tool([sys.executable, "-c", "raise SystemExit(4)"])
    assert out is None and err == f"{sys.executable}: exit 4"


def test_permission_error_says_run_as_root() -> None:
    code = "import sys; sys.stderr.write('x: Permission denied (you must be root)\\n'); sys.exit(1)"
    _, err = run_tool([sys.executable, "-c", code])
    assert err == f"{sys.executable}: x: Permission denied (you must be root) (run as root)"


def test_timeout() -> None:
    out, err = run_tool([sys.executable, "-c", "import time; time.sleep(5)"], timeout_s=0.2)
    assert out is None and err == f"{sys.executable}: timed out after 0.2 s"
