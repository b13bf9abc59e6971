"""Live: a real network namespace made with `ip netns add`; --netns sees it, the host view does not."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from procs import python_child, run_loopscope

from loopscope.collect import take_all_snapshots, take_snapshot

pytestmark = [pytest.mark.linux, pytest.mark.root, pytest.mark.netns]

LISTEN = """
import json, os, socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
c = socket.create_connection(s.getsockname())
print(json.dumps({"pid": os.getpid(), "port": s.getsockname()[1]}), flush=True)
"""


@pytest.fixture
def netns():
    name = f"ls-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_fresh_netns_has_lo_down_and_scan_says_how_to_fix(netns):
    result = run_loopscope("scan", "--netns", netns, "--json")
    doc = json.loads(result.stdout)
    assert result.returncode == 1  # LO_DOWN is critical
    stack = doc["namespaces"][0]["stack"]
    assert stack["lo_present"] and not stack["lo_up"]
    (finding,) = [f for f in doc["findings"] if f["code"] == "LO_DOWN"]
    assert finding["remedy"] == f"ip -n {netns} link set lo up"


def test_netns_listener_seen_only_with_netns(netns):
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    with python_child(LISTEN, prefix=["ip", "netns", "exec", netns]) as (_, child):
        inside = take_snapshot(netns)
        host = take_snapshot()
        every = take_all_snapshots()
        cli = run_loopscope("ports", "--netns", netns, "--json")
        by_pid = run_loopscope("ports", "--netns", str(child["pid"]), "--json")
    assert inside.netns_label == netns and inside.netns != host.netns
    ls = [s for s in inside.sockets if s.state.value == "LISTEN" and s.local.port == child["port"]]
    assert len(ls) == 1 and [k.pid for k in ls[0].owners] == [child["pid"]]
    assert not [
        s
        for s in host.sockets
        if s.state.value == "LISTEN" and s.local.port == child["port"] and s.inode == ls[0].inode
    ]
    labels = {s.netns_label for s in every}
    assert "host" in labels and netns in labels
    for result in (cli, by_pid):
        doc = json.loads(result.stdout)
        rows = [r for r in doc["listeners"] if r["port"] == child["port"]]
        assert rows and rows[0]["processes"][0]["pid"] == child["pid"]
    assert json.loads(by_pid.stdout)["listeners"][0]["netns"] == f"pid {child['pid']}"


def test_scan_all_netns_reports_each_namespace(netns):
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    with python_child(LISTEN, prefix=["ip", "netns", "exec", netns]) as (_, child):
        result = run_loopscope("scan", "--all-netns", "--json", "--fail-on", "never")
    assert result.returncode == 0, result.stderr
    spaces = {ns["netns"]: ns for ns in json.loads(result.stdout)["namespaces"]}
    assert "host" in spaces and netns in spaces
    mine = spaces[netns]
    assert mine["stack"]["lo_up"] and [r["port"] for r in mine["listeners"]] == [child["port"]]
    edges = mine["talk_map"]["edges"]
    assert len(edges) == 1 and edges[0]["self_call"] and edges[0]["client_pids"] == [child["pid"]]
