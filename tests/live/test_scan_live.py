"""Live: real processes with real loopback sockets; loopscope compared with `ss -tanup` (the oracle)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from procs import python_child, run_loopscope

from loopscope.analysis.talkmap import build_talk_map
from loopscope.collect import take_snapshot

pytestmark = pytest.mark.linux

SERVER = """
import json, socket, os
a = socket.socket(); a.bind(("127.0.0.1", 0)); a.listen(16)
b = socket.socket(socket.AF_INET6); b.bind(("::1", 0)); b.listen(16)
me = socket.create_connection(a.getsockname())          # a process that calls its own listener
mine, _ = a.accept()
print(json.dumps({"pid": os.getpid(), "v4": a.getsockname()[1], "v6": b.getsockname()[1],
                  "self_port": me.getsockname()[1]}), flush=True)
import threading
accepted = []
def loop(s):
    while True:
        c, _ = s.accept(); accepted.append(c)
threading.Thread(target=loop, args=(a,), daemon=True).start()
threading.Thread(target=loop, args=(b,), daemon=True).start()
"""

CLIENT = """
import json, socket, os, sys, time
v4, v6 = int(sys.argv[1]), int(sys.argv[2])
conns = [socket.create_connection(("127.0.0.1", v4)) for _ in range(3)]
conns += [socket.create_connection(("::1", v6)) for _ in range(2)]
time.sleep(0.2)
print(json.dumps({"pid": os.getpid(), "ports": [c.getsockname()[1] for c in conns]}), flush=True)
"""


def _client(v4: int, v6: int):
    return python_child(f"import sys; sys.argv=['x','{v4}','{v6}']\n" + CLIENT)


_USERS = re.compile(r'\("[^"]*",pid=(\d+),fd=\d+\)')


def _ss_rows():
    """(proto, state, local, peer, pids) from `ss -tanupH`."""
    out = subprocess.run(["ss", "-tanupH"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 6:
            continue
        proto, state, local, peer = cols[0], cols[1], cols[4], cols[5]
        pids = frozenset(int(p) for p in _USERS.findall(line))
        rows.append((proto, state, local, peer, pids))
    return rows


def _ss_endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]").split("%")[0]
    return ("0.0.0.0" if host == "*" else host), int(port)


def test_listeners_and_connections_equal_ss(tmp_path):
    with python_child(SERVER) as (_, srv), _client(srv["v4"], srv["v6"]) as (_, cli):
        ours = {srv["v4"], srv["v6"]}
        snap = take_snapshot()
        ss = _ss_rows()
    # listeners on our ports: same sockets, same pids
    ls_ss = {
        (p, _ss_endpoint(loc)): pids
        for p, st, loc, _, pids in ss
        if st == "LISTEN" and _ss_endpoint(loc)[1] in ours
    }
    ls_me = {
        (s.proto.value, (str(s.local.address), s.local.port)): frozenset(k.pid for k in s.owners)
        for s in snap.sockets
        if s.state.value == "LISTEN" and s.local.port in ours
    }
    assert ls_me == ls_ss and len(ls_me) == 2
    # established 4-tuples touching our ports: same set, same pids
    est_ss = {
        (_ss_endpoint(loc), _ss_endpoint(peer)): pids
        for p, st, loc, peer, pids in ss
        if st == "ESTAB" and (_ss_endpoint(loc)[1] in ours or _ss_endpoint(peer)[1] in ours)
    }
    est_me = {
        ((str(s.local.address), s.local.port), (str(s.remote.address), s.remote.port)): frozenset(
            k.pid for k in s.owners
        )
        for s in snap.sockets
        if s.state.value == "ESTABLISHED" and (s.local.port in ours or s.remote.port in ours)
    }
    assert est_me == est_ss
    assert len(est_me) == 2 * (3 + 2 + 1)  # both ends of 5 client connections and the self-call
    client_ends = [k for k, pids in est_me.items() if pids == frozenset({cli["pid"]})]
    assert sorted(k[0][1] for k in client_ends) == sorted(cli["ports"])


def test_map_finds_self_call_and_client_pids():
    with python_child(SERVER) as (_, srv), _client(srv["v4"], srv["v6"]) as (_, cli):
        talk = build_talk_map(take_snapshot())
        result = run_loopscope("map", "--json")
    ours = [e for e in talk.edges if e.port in (srv["v4"], srv["v6"])]
    by_client = {(e.client_pids, e.port): e for e in ours}
    self_edge = by_client[((srv["pid"],), srv["v4"])]
    assert self_edge.self_call and self_edge.connections == 1
    assert by_client[((cli["pid"],), srv["v4"])].connections == 3
    assert by_client[((cli["pid"],), srv["v6"])].connections == 2
    assert not by_client[((cli["pid"],), srv["v4"])].self_call
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1 and doc["command"] == "map"
    edges = [e for ns in doc["namespaces"] for e in ns["edges"] if e["port"] == srv["v4"]]
    assert {(tuple(e["client_pids"]), e["self_call"]) for e in edges} == {
        ((srv["pid"],), True),
        ((cli["pid"],), False),
    }
    assert any(f["code"] == "SELF_CALL" for f in doc["findings"])


def test_ports_json_and_exit_code_for_exposed_service():
    code = """
import json, socket, os
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 0)); s.listen(5)
print(json.dumps({"pid": os.getpid(), "port": s.getsockname()[1]}), flush=True)
"""
    with python_child(code) as (_, child):
        # a plain wildcard listener on a random port: listed, no finding, exit 0
        ok = run_loopscope("ports", "--port", str(child["port"]), "--json")
    assert ok.returncode == 0, ok.stderr
    (row,) = json.loads(ok.stdout)["listeners"]
    assert row["scope"] == "wildcard" and row["processes"][0]["pid"] == child["pid"]
    assert row["backlog"] == 5 and row["accept_queue"] == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["ports", "--netns", "no-such-ns-xyz"], "no network namespace 'no-such-ns-xyz'"),
        (["ports", "--port", "70000"], "out of range"),
        (["ports", "--source", "bogus"], "is not one of auto, sock_diag, procfs, psutil"),
        (["scan", "--netns", "x", "--all-netns"], "not both"),
        (["ports", "--fail-on", "loud"], "unknown severity"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    result = run_loopscope(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_scan_text_and_sources():
    for source in ("sock_diag", "procfs", "psutil"):
        result = run_loopscope("scan", "--source", source, "--fail-on", "never")
        assert result.returncode == 0, result.stderr
        assert "loopscope scan" in result.stdout and "Listeners" in result.stdout
        doc = json.loads(
            run_loopscope("scan", "--source", source, "--json", "--fail-on", "never").stdout
        )
        assert doc["namespaces"][0]["source"] == source


DROP_TO_NOBODY = """
import json, os, sys
from loopscope.collect import take_snapshot
from loopscope.analysis.listeners import find_listeners
import loopscope.backends.linux.netns, loopscope.backends.linux.procfs, loopscope.backends.linux.rtnl  # noqa
import loopscope.backends.linux.sock_diag, loopscope.analysis.scope  # noqa  (/root is 0700: import before setuid)
take_snapshot()  # warm-up as root: loads every lazily imported module (/root is 0700 here)
os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
snap = take_snapshot()
port = int(sys.argv[1])
rows = [r for r in find_listeners(snap) if r.local.port == port]
print(json.dumps({"uid": [r.uid for r in rows], "owners": [len(r.owners) for r in rows],
                  "gaps": [g.reason for g in snap.gaps], "source": snap.source}))
"""


@pytest.mark.root
def test_unprivileged_run_reports_gaps():
    import sys

    with python_child(SERVER) as (_, srv):
        result = subprocess.run(
            [sys.executable, "-c", DROP_TO_NOBODY, str(srv["v4"])],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["source"] == "sock_diag"  # netlink dumps need no privilege
    assert doc["uid"] == [0] and doc["owners"] == [0]  # root's socket seen, its process not
    assert any("run as root" in reason for reason in doc["gaps"])
