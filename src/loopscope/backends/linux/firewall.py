"""Read the firewall rulesets of the current network namespace (``nft -j list ruleset``,
``iptables-save``, ``ip6tables-save``) and parse them with :mod:`loopscope.analysis.firewall.evaluate`."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from loopscope.analysis.firewall.evaluate import Ruleset, parse_rulesets

__all__ = ["RulesetRead", "read_ruleset"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesetRead:
    """The merged ruleset and what could not be read."""

    ruleset: Ruleset | None
    """None when no source could be read."""
    errors: tuple[str, ...] = ()
    """``nft: not installed``, ``iptables-save: Permission denied (run as root)``..."""


def _run(argv: list[str], timeout_s: float) -> tuple[str | None, str | None]:
    if shutil.which(argv[0]) is None:
        return None, f"{argv[0]}: not installed"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return None, f"{argv[0]}: timed out after {timeout_s} s"
    except OSError as exc:
        return None, f"{argv[0]}: {exc.strerror}"
    if proc.returncode != 0:
        msg = (
            proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        )
        hint = " (run as root)" if "ermission" in msg or "not permitted" in msg else ""
        return None, f"{argv[0]}: {msg}{hint}"
    return proc.stdout, None


def read_ruleset(timeout_s: float = 5.0) -> RulesetRead:
    """Read and merge every ruleset available here; missing tools and permission errors become
    ``errors`` (they are a gap, not a failure)."""
    texts: list[str | None] = []
    errors: list[str] = []
    for argv in (["nft", "-j", "list", "ruleset"], ["iptables-save"], ["ip6tables-save"]):
        text, err = _run(argv, timeout_s)
        texts.append(text)
        if err:
            errors.append(err)
    if all(t is None for t in texts):
        return RulesetRead(ruleset=None, errors=tuple(errors))
    ruleset, parse_errors = parse_rulesets(*texts)
    return RulesetRead(ruleset=ruleset, errors=tuple(errors) + parse_errors)
