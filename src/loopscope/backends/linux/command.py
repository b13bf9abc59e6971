"""Run a system tool (``nft``, ``iptables-save``, ``ip netns exec ... getent``) and keep its output or
one line saying why there is none.

A child process inherits the network namespace of the thread that forks it, so a tool run inside
:func:`~loopscope.backends.linux.netns.run_in_netns` reads that namespace.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

__all__ = ["run_tool"]


def run_tool(argv: Sequence[str], timeout_s: float = 5.0) -> tuple[str | None, str | None]:
    """Run ``argv`` and return ``(stdout, None)``, or ``(None, reason)`` when it gave no output.

    A missing tool, a timeout or a non-zero exit is a gap to report, not an exception. The reason names
    the tool and, for a non-zero exit, quotes the last line of its stderr (at most 160 characters); a
    permission error adds ``(run as root)``.

    Example: ``run_tool(["iptables-save"])`` as a user ->
    ``(None, "iptables-save: iptables-save v1.8.9 (nf_tables): Could not fetch rule set generation id:
    Permission denied (you must be root) (run as root)")``; without nft installed, ``run_tool(["nft",
    "-j", "list", "ruleset"])`` -> ``(None, "nft: not installed")``.

    Args:
        argv: program and arguments (the program is looked up in PATH).
        timeout_s: how long the tool may run, seconds.
    """
    tool = argv[0]
    if shutil.which(tool) is None:
        return None, f"{tool}: not installed"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return None, f"{tool}: timed out after {timeout_s} s"
    except OSError as exc:
        return None, f"{tool}: {exc.strerror}"
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        msg = lines[-1][:160] if lines else f"exit {proc.returncode}"
        denied = "ermission" in proc.stderr or "not permitted" in proc.stderr
        return None, f"{tool}: {msg}{' (run as root)' if denied else ''}"
    return proc.stdout, None
