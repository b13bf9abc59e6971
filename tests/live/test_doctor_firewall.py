"""Live: real nftables rules inside a netns we create; the doctor finds the rule that drops a loopback
port (with the listener it hits), and a drop policy that breaks its own echo probes. The kernel is the
oracle: a connect() to the blocked port really times out."""

from __future__ import annotations

import json
import socket
import subprocess
import uuid

import pytest
from procs import python_child, run_loopscope

from loopscope.backends.linux.netns import resolve_netns, run_in_netns

pytestmark = [pytest.mark.linux, pytest.mark.root, pytest.mark.netns]

LISTEN = """
import json, os, socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
print(json.dumps({"pid": os.getpid(), "port": s.getsockname()[1]}), flush=True)
"""


@pytest.fixture
def netns():  # type: ignore[no-untyped-def]
    name = f"ls-dfw-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)  # its nft tables go with it


def _nft(netns: str, script: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script, text=True, check=True
    )


def _firewall_check(netns: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = run_loopscope("doctor", "--netns", netns, "--rung", "1", "--json")
    doc = json.loads(result.stdout)
    checks = {c["id"]: c for r in doc["namespaces"][0]["rungs"] for c in r["checks"]}
    return result.returncode, checks


def _connect_times_out(netns: str, port: int) -> bool:
    def attempt() -> bool:
        with socket.socket() as s:
            s.settimeout(0.3)
            try:
                s.connect(("127.0.0.1", port))
            except TimeoutError:
                return True
            return False

    return run_in_netns(resolve_netns(netns), attempt)


def test_clean_netns_firewall_ok(netns):
    code, checks = _firewall_check(netns)
    assert code == 0 and checks["firewall.loopback"]["verdict"] == "ok"


def test_rule_dropping_a_loopback_port_with_a_listener_fails(netns):
    with python_child(LISTEN, prefix=["ip", "netns", "exec", netns]) as (_, child):
        port = child["port"]
        assert not _connect_times_out(netns, port)
        _nft(
            netns,
            f"""table inet lsdoc {{
  chain input {{ type filter hook input priority 0; policy accept;
    iifname "lo" tcp dport {port} drop
  }}
}}""",
        )
        assert _connect_times_out(netns, port)  # the kernel agrees the rule bites
        code, checks = _firewall_check(netns)
    fw = checks["firewall.loopback"]
    assert code == 1 and fw["verdict"] == "fail" and fw["code"] == "FIREWALL_BLOCKS_LOOPBACK"
    assert f"tcp {port} (python" in fw["evidence"] and "nft inet lsdoc input" in fw["evidence"]
    assert f"dport {port}" in " ".join(fw["data"]["rules"])
    # the doctor's own echo uses another port: it still passes, the firewall check is what catches this
    assert checks["echo.tcp.127.0.0.1"]["verdict"] == "ok"


def test_rule_without_listener_warns(netns):
    _nft(
        netns,
        """table inet lsdoc {
  chain input { type filter hook input priority 0; policy accept;
    ip daddr 127.0.0.0/8 tcp dport 6553 reject
  }
}""",
    )
    code, checks = _firewall_check(netns)
    assert code == 0 and checks["firewall.loopback"]["verdict"] == "warn"
    assert "6553" in checks["firewall.loopback"]["evidence"]


def test_drop_policy_on_input_breaks_the_echo_probes_and_is_named(netns):
    _nft(
        netns,
        """table inet lsdoc {
  chain input { type filter hook input priority 0; policy drop;
    tcp dport 22 accept
  }
}""",
    )
    code, checks = _firewall_check(netns)
    assert code == 1
    assert checks["firewall.loopback"]["verdict"] == "fail"
    assert (
        "any port on 127.0.0.1 blocked by nft inet lsdoc input: policy drop"
        in checks["firewall.loopback"]["evidence"]
    )
    assert (
        checks["echo.tcp.127.0.0.1"]["verdict"] == "fail"
        and "timed out" in checks["echo.tcp.127.0.0.1"]["evidence"]
    )
    assert checks["icmp.127.0.0.1"]["verdict"] == "fail"
