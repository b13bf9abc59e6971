"""Read the firewall rulesets of the current network namespace (``nft -j list ruleset``,
``iptables-save``, ``ip6tables-save``) and parse them with :mod:`loopscope.checks.firewall`."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from loopscope.checks.firewall import Ruleset, merge_rulesets, parse_iptables_save, parse_nft_json
from loopscope.errors import ParseError

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
        msg = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        hint = " (run as root)" if "ermission" in msg or "not permitted" in msg else ""
        return None, f"{argv[0]}: {msg}{hint}"
    return proc.stdout, None


def read_ruleset(timeout_s: float = 5.0) -> RulesetRead:
    """Read and merge every ruleset available here; missing tools and permission errors become
    ``errors`` (they are a gap, not a failure)."""
    parts: list[Ruleset] = []
    errors: list[str] = []
    text, err = _run(["nft", "-j", "list", "ruleset"], timeout_s)
    if text is not None:
        try:
            parts.append(parse_nft_json(text))
        except ParseError as exc:
            errors.append(f"nft: {exc}")
    elif err:
        errors.append(err)
    for tool in ("iptables-save", "ip6tables-save"):
        text, err = _run([tool], timeout_s)
        if text is not None:
            if text.strip():
                try:
                    parts.append(parse_iptables_save(text, "ip6" if tool.startswith("ip6") else "ip"))
                except ParseError as exc:
                    errors.append(f"{tool}: {exc}")
        elif err:
            errors.append(err)
    return RulesetRead(ruleset=merge_rulesets(*parts) if parts else None, errors=tuple(errors))
