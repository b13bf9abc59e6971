"""Live: `loopscope doctor` in real namespaces: a fresh netns has lo DOWN (rung 1 fails and says how
to fix it); after `ip -n X link set lo up` rung 1 passes; --netns PID and --all-netns."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from procs import python_child, run_loopscope

pytestmark = [pytest.mark.linux, pytest.mark.root, pytest.mark.netns]

SLEEPER = """
import json, os
print(json.dumps({"pid": os.getpid()}), flush=True)
"""


@pytest.fixture
def netns():  # type: ignore[no-untyped-def]
    name = f"ls-doc-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _doctor(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = run_loopscope("doctor", *args, "--json")
    assert result.stderr == "" or "gap" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def _checks(doc: dict, ns: int = 0) -> dict[str, dict]:  # type: ignore[type-arg]
    return {c["id"]: c for r in doc["namespaces"][ns]["rungs"] for c in r["checks"]}


def test_fresh_netns_fails_rung1_and_says_how_to_fix_then_passes(netns):
    code, doc = _doctor("--netns", netns, "--rung", "1")
    assert code == 1 and doc["schema_version"] == 1 and doc["command"] == "doctor"
    rung1 = doc["namespaces"][0]["rungs"][0]
    assert rung1["verdict"] == "fail"
    checks = _checks(doc)
    link = checks["lo.link"]
    assert (
        link["verdict"] == "fail" and link["code"] == "LO_DOWN" and link["severity"] == "critical"
    )
    assert link["remedy"] == f"ip -n {netns} link set lo up"
    assert (
        checks["echo.tcp.127.0.0.1"]["verdict"] == "fail"
        and "lo.link" in checks["echo.tcp.127.0.0.1"]["caused_by"]
    )
    assert "Network is unreachable" in checks["echo.tcp.127.0.0.1"]["evidence"]
    assert checks["lo.routes"]["verdict"] == "fail"
    assert any(f["code"] == "LO_DOWN" for f in doc["findings"])

    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    code, doc = _doctor("--netns", netns, "--rung", "1")
    assert code == 0, [c for c in _checks(doc).values() if c["verdict"] != "ok"]
    assert doc["namespaces"][0]["rungs"][0]["verdict"] == "ok"
    checks = _checks(doc)
    assert checks["lo.ipv4"]["evidence"] == "IPv4 addresses on lo: 127.0.0.1/8"
    assert checks["icmp.127.0.0.1"]["data"]["received"] == 3
    assert checks["echo.udp.127.0.0.2"]["data"]["rtt_p50_us"] > 0


def test_rung2_in_an_isolated_netns_warns_and_fail_on_decides_the_exit_code(netns):
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    code, doc = _doctor("--netns", netns)
    rungs = doc["namespaces"][0]["rungs"]
    assert [r["verdict"] for r in rungs] == ["ok", "warn"] and code == 0
    assert _checks(doc)["net.interfaces"]["evidence"] == "only lo here"
    assert run_loopscope("doctor", "--netns", netns, "--json", "--fail-on", "low").returncode == 1
    assert run_loopscope("doctor", "--netns", netns, "--json", "--fail-on", "never").returncode == 0


def test_netns_by_pid_and_all_netns(netns):
    with python_child(SLEEPER, prefix=["ip", "netns", "exec", netns]) as (_, child):
        code, doc = _doctor("--netns", str(child["pid"]), "--rung", "1")
        assert code == 1
        assert doc["namespaces"][0]["netns"] == f"pid {child['pid']}"
        assert (
            _checks(doc)["lo.link"]["remedy"] == f"nsenter -t {child['pid']} -n ip link set lo up"
        )
    code, doc = _doctor("--all-netns", "--rung", "1", "--no-processes")
    labels = [ns["netns"] for ns in doc["namespaces"]]
    assert labels[0] == "host" and netns in labels and code == 1
    mine = doc["namespaces"][labels.index(netns)]
    assert mine["verdict"] == "fail"


def test_text_output_names_the_fix(netns):
    result = run_loopscope("doctor", "--netns", netns, "--rung", "1", "--no-processes")
    assert result.returncode == 1
    assert "Rung 1: loopback stack FAIL" in result.stdout
    assert f"ip -n {netns} link set lo up" in result.stdout
    assert "this also explains" in result.stdout  # in a pipe: natural width, one line each
    narrow = run_loopscope(
        "doctor", "--netns", netns, "--rung", "1", "--no-processes", prefix=["env", "COLUMNS=100"]
    )
    assert narrow.returncode == 1 and f"ip -n {netns} link set lo up" in narrow.stdout
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 100  # the user's COLUMNS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--external", "nohost"], "expected HOST:PORT"),
        (["--external", "::1:80"], "write IPv6 as [ADDR]:PORT"),
        (["--rung", "7"], "'7' is out of range 1-3"),
        (["--netns", "no-such-ns-doc"], "no network namespace 'no-such-ns-doc'"),
        (["--netns", "x", "--all-netns"], "not both"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = run_loopscope("doctor", *args)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_lo_set_down_after_use_keeps_its_address_but_fails(netns):
    """`ip link set lo down` on a used namespace: 127.0.0.1/8 stays assigned, the local routes go, and
    packets to 127.0.0.1 vanish (connect times out instead of failing at once)."""
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "down"], check=True)
    code, doc = _doctor("--netns", netns, "--rung", "1", "--no-processes")
    checks = _checks(doc)
    assert code == 1 and checks["lo.link"]["code"] == "LO_DOWN"
    assert checks["lo.ipv4"]["verdict"] == "ok"
    assert checks["lo.routes"]["verdict"] == "fail"
    tcp = checks["echo.tcp.127.0.0.1"]
    assert tcp["verdict"] == "fail" and "lo.link" in tcp["caused_by"]
