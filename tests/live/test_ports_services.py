"""Live: real Debian servers on chosen bind addresses; `ports` and `map` must report them as they are.

redis-server on 0.0.0.0 and PostgreSQL on [::] (sensitive, exposed), memcached on 127.0.0.1 only and
nginx (master + worker both holding the listener) on [::1] only.
"""

from __future__ import annotations

import json
from contextlib import ExitStack

import pytest
from procs import python_child, run_loopscope
from servers import ServerUnavailable, memcached_server, nginx_server, postgres_server, redis_server

pytestmark = [pytest.mark.linux, pytest.mark.services, pytest.mark.root]


@pytest.fixture(scope="module")
def services():
    with ExitStack() as stack:
        try:
            yield {
                "redis": stack.enter_context(redis_server(bind="0.0.0.0")),
                "postgres": stack.enter_context(postgres_server(bind="::")),
                "memcached": stack.enter_context(memcached_server(bind="127.0.0.1")),
                "nginx": stack.enter_context(nginx_server(bind="::1", tls=False)),
            }
        except ServerUnavailable as exc:
            pytest.skip(str(exc))


def _rows(doc, port):
    return [r for r in doc["listeners"] if r["port"] == port and r["proto"] == "tcp"]


def test_ports_reports_scope_owner_and_exposure(services):
    result = run_loopscope("ports", "--json")
    doc = json.loads(result.stdout)
    assert result.returncode == 1, result.stderr  # exposed Redis/PostgreSQL are high severity

    (redis,) = _rows(doc, services["redis"].port)
    assert (redis["address"], redis["scope"]) == ("0.0.0.0", "wildcard")
    assert [p["comm"] for p in redis["processes"]] == ["redis-server"]
    assert redis["processes"][0]["pid"] == services["redis"].proc.pid

    (pg,) = _rows(doc, services["postgres"].port)
    assert (pg["address"], pg["scope"], pg["family"]) == ("::", "wildcard", "inet6")
    assert (
        pg["processes"]
        and pg["processes"][0]["comm"] == "postgres"
        and pg["processes"][0]["user"] == "postgres"
    )

    (mc,) = _rows(doc, services["memcached"].port)
    assert (mc["address"], mc["scope"], mc["reach"]) == ("127.0.0.1", "loopback", "this host only")
    assert mc["processes"][0]["user"] == "nobody"

    (ngx,) = _rows(doc, services["nginx"].port)
    assert (ngx["address"], ngx["scope"]) == ("::1", "loopback")
    assert len(ngx["processes"]) == 2 and {p["comm"] for p in ngx["processes"]} == {
        "nginx"
    }  # master + worker

    by_code: dict[str, set[str]] = {}
    for f in doc["findings"]:
        by_code.setdefault(f["code"], set()).add(f["subject"])
    exposed = by_code.get("EXPOSED_SENSITIVE_SERVICE", set())
    assert any(f":{services['redis'].port}/tcp" in s and "redis-server" in s for s in exposed)
    assert any(f":{services['postgres'].port}/tcp" in s and "postgres" in s for s in exposed)
    assert not any(f":{services['memcached'].port}/" in s for s in exposed)  # loopback only: fine
    single = by_code.get("LOCALHOST_SINGLE_FAMILY", set())
    assert any(f"port {services['memcached'].port}/tcp" in s for s in single)
    assert any(f"port {services['nginx'].port}/tcp" in s for s in single)


def test_ports_filters_and_fail_on(services):
    only = run_loopscope("ports", "--port", str(services["memcached"].port), "--json")
    assert only.returncode == 0  # its one finding is low severity, below the default --fail-on high
    assert [r["port"] for r in json.loads(only.stdout)["listeners"]] == [services["memcached"].port]
    strict = run_loopscope("ports", "--port", str(services["memcached"].port), "--fail-on", "low")
    assert strict.returncode == 1 and "LOCALHOST_SINGLE_FAMILY" in strict.stdout
    by_pid = run_loopscope("ports", "--pid", str(services["redis"].proc.pid), "--json")
    assert {r["port"] for r in json.loads(by_pid.stdout)["listeners"]} == {services["redis"].port}
    text = run_loopscope("ports", "--scope", "loopback")
    assert "memcached" in text.stdout and "redis-server" not in text.stdout


def test_map_edges_to_real_servers(services):
    code = f"""
import json, os, socket
r = [socket.create_connection(("127.0.0.1", {services["redis"].port})) for _ in range(2)]
m = socket.create_connection(("127.0.0.1", {services["memcached"].port}))
n = socket.create_connection(("::1", {services["nginx"].port}))
print(json.dumps({{"pid": os.getpid()}}), flush=True)
"""
    with python_child(code) as (_, child):
        doc = json.loads(run_loopscope("map", "--json").stdout)
    edges = [e for ns in doc["namespaces"] for e in ns["edges"] if child["pid"] in e["client_pids"]]
    got = {(e["port"], e["server"].split("[")[0], e["connections"], e["self_call"]) for e in edges}
    assert got == {
        (services["redis"].port, "redis-server", 2, False),
        (services["memcached"].port, "memcached", 1, False),
        (services["nginx"].port, "nginx", 1, False),
    }


def test_ports_fingerprint_and_verify_exposure(services):
    result = run_loopscope(
        "ports", "--fingerprint", "--verify-exposure", "--json", "--fail-on", "never"
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    service = {r["port"]: r["service"] for r in doc["listeners"] if r["proto"] == "tcp"}
    outside = {r["port"]: r["outside"] for r in doc["listeners"] if r["proto"] == "tcp"}
    assert service[services["redis"].port].startswith("redis")
    assert service[services["memcached"].port].startswith("memcached")
    assert service[services["postgres"].port].startswith("postgresql")
    assert service[services["nginx"].port].startswith("http")
    assert outside[services["redis"].port] == "reachable"  # 0.0.0.0: another host gets in
    assert outside[services["memcached"].port] != "reachable"  # 127.0.0.1 only
    assert outside[services["nginx"].port] != "reachable"  # ::1 only
