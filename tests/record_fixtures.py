"""Re-record the test fixtures: one command for every recorder.

Usage (from anywhere; recorders run from the repository root)::

    python tests/record_fixtures.py --list           # the recorders, what they write, what they need
    python tests/record_fixtures.py destroy host1    # run some
    sudo python tests/record_fixtures.py all         # run every one (several need root)

Each recorder stays next to the fixtures it writes (as a script); this table is the one place that
lists them. A recorder whose needs are not met (root, a tool on PATH) is skipped with the reason; the
exit code is 1 when one failed or was skipped, 2 for an unknown name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorder:
    """One fixture recorder."""

    name: str
    """What ``python tests/record_fixtures.py NAME`` runs."""
    script: str
    """The recorder, relative to the repository root (``.py`` runs with this Python, ``.sh`` with sh)."""
    writes: str
    """The fixtures it rewrites, relative to the repository root."""
    root: bool = False
    """Needs root (network namespaces, firewall rules, servers on privileged setups)."""
    tools: tuple[str, ...] = ()
    """Programs it needs on PATH."""


RECORDERS: tuple[Recorder, ...] = (
    Recorder(
        name="host1",
        script="tests/fixtures/make_host1.py",
        writes="tests/fixtures/host1/ (sock_diag.json, rtnl.json, proc/, expected.json)",
    ),
    Recorder(
        name="destroy",
        script="tests/unit/analysis/watch/record_destroy.py",
        writes="tests/unit/analysis/watch/fixtures/destroy.json",
    ),
    Recorder(
        name="doctor",
        script="tests/unit/analysis/doctor/record_doctor_facts.py",
        writes="tests/unit/analysis/doctor/fixtures/doctor_*.json",
        root=True,
        tools=("ip",),
    ),
    Recorder(
        name="firewall",
        script="tests/unit/analysis/firewall/record_firewall_fixtures.sh",
        writes="tests/unit/analysis/firewall/fixtures/ (nft_ruleset.json, nft_ruleset.txt, iptables_save.txt)",
        root=True,
        tools=("ip", "nft", "iptables", "ip6tables", "iptables-save", "ip6tables-save"),
    ),
    Recorder(
        name="fingerprint",
        script="tests/unit/probes/record_fingerprint_replies.py",
        writes="tests/unit/probes/fixtures/replies.json",
        root=True,
        tools=("sshd", "redis-server", "memcached", "nginx", "openssl"),
    ),
)
BY_NAME = {r.name: r for r in RECORDERS}


def missing_needs(rec: Recorder) -> list[str]:
    """Why ``rec`` cannot run here (empty when it can)."""
    out = [f"{tool} not on PATH" for tool in rec.tools if shutil.which(tool) is None]
    if rec.root and os.geteuid() != 0:
        out.insert(0, "needs root")
    return out


def command(rec: Recorder) -> list[str]:
    """The argv that runs ``rec`` (from the repository root)."""
    script = str(ROOT / rec.script)
    return ["sh", script] if script.endswith(".sh") else [sys.executable, script]


def run(rec: Recorder) -> bool:
    """Run one recorder; True when it succeeded."""
    why = missing_needs(rec)
    if why:
        print(f"{rec.name}: skipped ({', '.join(why)})")
        return False
    print(f"{rec.name}: {rec.script} -> {rec.writes}", flush=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(command(rec), cwd=ROOT, env=env, check=False)
    if done.returncode != 0:
        print(f"{rec.name}: failed (exit {done.returncode})")
    return done.returncode == 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    if args == ["--list"]:
        for rec in RECORDERS:
            needs = ", ".join([*(["root"] if rec.root else []), *rec.tools]) or "nothing"
            print(f"{rec.name:12} {rec.script}\n{'':12} writes {rec.writes}; needs {needs}")
        return 0
    names = list(BY_NAME) if args == ["all"] else args
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        print(
            f"unknown recorder(s) {unknown}: choose from {sorted(BY_NAME)} or all", file=sys.stderr
        )
        return 2
    ok = [run(BY_NAME[n]) for n in names]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())
