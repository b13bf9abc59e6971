"""``loopscope top`` command line: option checks, and the message when textual is missing."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_refresh_floor_is_a_usage_error() -> None:
    done = _run("from loopscope.cli.app import main; main(['top', '--refresh', '0.1'])")
    assert done.returncode == 2
    assert "--refresh must be at least 0.5 s" in done.stderr


def test_without_textual_says_how_to_install() -> None:
    # a None entry in sys.modules makes `import textual` raise ImportError, as when it is absent
    done = _run(
        "import sys; sys.modules['textual'] = None\n"
        "from loopscope.cli.app import main; main(['top'])"
    )
    assert done.returncode == 2
    assert "pip install 'loopscope[tui]'" in done.stderr
    assert done.stderr.count("\n") == 1  # one line, no traceback


def test_help_lists_the_options() -> None:
    done = _run("from loopscope.cli.app import main; main(['top', '--help'])")
    assert done.returncode == 0
    for opt in ("--pid", "--port", "--http", "--netns", "--refresh", "--window", "--no-ebpf"):
        assert opt in done.stdout
