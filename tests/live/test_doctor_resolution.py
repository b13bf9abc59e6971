"""Live: `localhost` resolution against a real listener bound to one family, inside a netns whose
processes see /etc/netns/NAME/hosts (bind-mounted over /etc/hosts by `ip netns exec`). The oracle is a
real client under `ip netns exec` that connects to the first address of `localhost` only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest
from procs import python_child, run_loopscope

pytestmark = [pytest.mark.linux, pytest.mark.root, pytest.mark.netns]

LISTEN = """
import json, os, socket, sys
family, addr = {fam}, {addr!r}
s = socket.socket(family); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0) if family == socket.AF_INET6 else None
s.bind((addr, 0)); s.listen(4)
print(json.dumps({{"pid": os.getpid(), "port": s.getsockname()[1]}}), flush=True)
"""
FIRST_ONLY_CLIENT = """
import socket, sys
info = socket.getaddrinfo("localhost", int(sys.argv[1]), type=socket.SOCK_STREAM)[0]
s = socket.socket(info[0]); s.settimeout(1)
try:
    s.connect(info[4]); print("connected", info[4][0])
except OSError as exc:
    print("failed", info[4][0], exc.errno)
"""


@pytest.fixture
def netns():  # type: ignore[no-untyped-def]
    name = f"ls-dres-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    os.makedirs(f"/etc/netns/{name}")
    try:
        yield name
    finally:
        shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)
        subprocess.run(["ip", "netns", "del", name], check=False)


def _hosts(netns: str, text: str) -> None:
    with open(f"/etc/netns/{netns}/hosts", "w") as fh:
        fh.write(text)


def _listener(netns: str, family: str, addr: str):  # type: ignore[no-untyped-def]
    return python_child(
        LISTEN.format(fam=f"socket.{family}", addr=addr), prefix=["ip", "netns", "exec", netns]
    )


def _first_only_client(netns: str, port: int) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", FIRST_ONLY_CLIENT, str(port)],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return out.stdout.strip()


def _mismatch(netns: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
    result = run_loopscope("doctor", "--netns", netns, "--rung", "1", "--json")
    doc = json.loads(result.stdout)
    checks = {c["id"]: c for r in doc["namespaces"][0]["rungs"] for c in r["checks"]}
    return doc["namespaces"][0], checks


def test_v6_first_with_listener_on_127_only_warns(netns):
    _hosts(netns, "127.0.0.1 localhost\n::1 localhost\n")
    with _listener(netns, "AF_INET", "127.0.0.1") as (_, child):
        oracle = _first_only_client(netns, child["port"])
        ns, checks = _mismatch(netns)
    assert oracle.startswith("failed ::1")  # a first-address-only client really fails
    assert ns["resolver"] == f"getent ahosts (ip netns exec {netns})"
    assert ns["hosts_path"] == f"/etc/netns/{netns}/hosts"
    res = checks["resolve.localhost"]
    assert res["verdict"] == "ok" and res["data"]["order"] == ["::1", "127.0.0.1"]
    assert checks["resolve.mismatch"]["verdict"] == "ok"  # the stack is fine: the service is not
    mm = checks[f"resolve.mismatch.{child['port']}"]
    assert mm["verdict"] == "warn" and mm["code"] == "LOCALHOST_V6_FIRST_LISTENER_V4_ONLY"
    assert mm["service_level"] and ns["rungs"][0]["verdict"] == "warn"
    assert (
        f"port {child['port']} (python" in mm["evidence"]
        and "listens on 127.0.0.1 only" in mm["evidence"]
    )


def test_v6_only_name_with_v4_listener_fails(netns):
    _hosts(netns, "::1 localhost\n")
    with _listener(netns, "AF_INET", "127.0.0.1") as (_, child):
        oracle = _first_only_client(netns, child["port"])
        ns, checks = _mismatch(netns)
    assert oracle.startswith("failed ::1")
    mm = checks[f"resolve.mismatch.{child['port']}"]
    assert mm["verdict"] == "fail" and "every localhost client fails" in mm["evidence"]
    # the service's problem, not a FAIL of the loopback stack rung
    assert ns["rungs"][0]["verdict"] == "warn" and checks["resolve.mismatch"]["verdict"] == "ok"
    assert ns["rungs"][0]["invalidates"] == []


def test_reverse_v4_name_with_v6_listener_fails(netns):
    _hosts(netns, "127.0.0.1 localhost\n")
    with _listener(netns, "AF_INET6", "::1") as (_, child):
        oracle = _first_only_client(netns, child["port"])
        _ns, checks = _mismatch(netns)
    assert oracle.startswith("failed 127.0.0.1")
    mm = checks[f"resolve.mismatch.{child['port']}"]
    assert mm["verdict"] == "fail" and mm["code"] == "LOCALHOST_V4_FIRST_LISTENER_V6_ONLY"


def test_dual_stack_listener_passes(netns):
    _hosts(netns, "127.0.0.1 localhost\n::1 localhost\n")
    with _listener(netns, "AF_INET6", "::") as (_, child):
        oracle = _first_only_client(netns, child["port"])
        _ns, checks = _mismatch(netns)
    assert oracle.startswith("connected ::1")
    assert checks["resolve.mismatch"]["verdict"] == "ok"
    assert [c for c in checks if c.startswith("resolve.mismatch.")] == []


def test_hosts_file_option_on_the_host(tmp_path):
    bad = tmp_path / "hosts"
    bad.write_text("192.0.2.2 localhost\n")
    result = run_loopscope(
        "doctor", "--rung", "1", "--json", "--hosts-file", str(bad), "--no-processes"
    )
    doc = json.loads(result.stdout)
    checks = {c["id"]: c for r in doc["namespaces"][0]["rungs"] for c in r["checks"]}
    assert (
        checks["resolve.localhost"]["code"] == "LOCALHOST_NOT_LOOPBACK" and result.returncode == 1
    )
    assert doc["namespaces"][0]["resolver"] == "hosts file, RFC 6724 order"


def test_container_like_process_with_its_own_hosts_file(netns, tmp_path):
    """A process in its own mount namespace (as in a container) sees another /etc/hosts: --netns PID
    judges that file (via /proc/PID/root), not the host's."""
    hosts = tmp_path / "hosts"
    hosts.write_text("::1 localhost\n")
    shell = 'mount --bind "$0" /etc/hosts && exec ip netns exec ' + netns + ' "$@"'
    prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c", shell, str(hosts)]
    with python_child(LISTEN.format(fam="socket.AF_INET", addr="127.0.0.1"), prefix=prefix) as (
        _,
        child,
    ):
        result = run_loopscope("doctor", "--netns", str(child["pid"]), "--rung", "1", "--json")
    ns = json.loads(result.stdout)["namespaces"][0]
    checks = {c["id"]: c for r in ns["rungs"] for c in r["checks"]}
    assert ns["hosts_path"] == f"/proc/{child['pid']}/root/etc/hosts"
    assert checks["resolve.localhost"]["data"]["order"] == ["::1"]
    assert (
        checks[f"resolve.mismatch.{child['port']}"]["verdict"] == "fail" and result.returncode == 1
    )
    doc = json.loads(result.stdout)
    (finding,) = [f for f in doc["findings"] if f["code"] == "LOCALHOST_V6_FIRST_LISTENER_V4_ONLY"]
    assert finding["subject"].endswith(f"port {child['port']}/tcp")  # subject: the service
    assert ns["rungs"][0]["verdict"] == "warn"
