from pathlib import Path

from loopscope.analysis.exposure import (
    SENSITIVE_PORTS,
    check_exposure,
    listener_key,
    sensitive_service_of,
    verdict_without_finding,
)
from loopscope.analysis.listeners import find_listeners
from loopscope.model import Proto, Scope, Severity, StackFacts
from loopscope.testing.factories import listener, make_snapshot, proc, snapshot_from_recording

FIXTURES = Path(__file__).parents[2] / "fixtures"


def codes(findings):
    return sorted((f.code, f.subject) for f in findings)


def test_recorded_host_listeners_and_scopes(host1_expected):
    snap = snapshot_from_recording(FIXTURES / "host1")
    rows = {(r.local.port, r.family.value): r for r in find_listeners(snap)}
    assert rows[(host1_expected["listen_127"], "inet")].scope is Scope.LOOPBACK
    assert rows[(host1_expected["listen_any4"], "inet")].reach == "all IPv4 addresses"
    assert rows[(host1_expected["listen_any6_dual"], "inet6")].reach == "all IPv4 and IPv6"
    assert rows[(host1_expected["listen_v6_loop"], "inet6")].owners[0].pid == host1_expected["pid"]
    findings = check_exposure(snap)
    singles = {f.subject for f in findings if f.code == "LOCALHOST_SINGLE_FAMILY"}
    assert any(str(host1_expected["listen_127"]) in s for s in singles)
    assert any(str(host1_expected["listen_v6_loop"]) in s for s in singles)


def test_sensitive_by_port_and_by_process_name():
    redis = proc(10, "redis-server")
    odd = proc(11, "postgres")
    snap = make_snapshot(
        [
            listener("tcp", "0.0.0.0", 6379, owners=[redis]),
            listener(
                "tcp", "192.0.2.2", 15432, owners=[odd]
            ),  # a host address, odd port, known process
            listener("tcp", "127.0.0.1", 3306),  # loopback: fine
        ],
        [redis, odd],
    )
    found = [f for f in check_exposure(snap) if f.code == "EXPOSED_SENSITIVE_SERVICE"]
    assert {f.subject for f in found} == {
        "redis-server 0.0.0.0:6379/tcp",
        "postgres 192.0.2.2:15432/tcp",
    }
    assert all(f.severity is Severity.HIGH for f in found)


def test_docker_api_is_critical():
    snap = make_snapshot([listener("tcp", "::", 2375, v6only=False)])
    (f,) = [f for f in check_exposure(snap) if f.code == "EXPOSED_SENSITIVE_SERVICE"]
    assert f.severity is Severity.CRITICAL and "all IPv4 and IPv6" in f.evidence


def test_split_family_binding():
    snap = make_snapshot(
        [listener("tcp", "127.0.0.1", 6379), listener("tcp", "::", 6379, v6only=True)]
    )
    (f,) = [f for f in check_exposure(snap) if f.code == "SPLIT_FAMILY_BINDING"]
    assert "loopback-only for inet" in f.evidence
    ok = make_snapshot([listener("tcp", "127.0.0.1", 6379), listener("tcp", "::1", 6379)])
    assert not [
        f
        for f in check_exposure(ok)
        if f.code in ("SPLIT_FAMILY_BINDING", "LOCALHOST_SINGLE_FAMILY")
    ]


def test_localhost_single_family_respects_disabled_ipv6():
    rows = [listener("tcp", "127.0.0.1", 8000)]
    assert codes(check_exposure(make_snapshot(rows))) == [
        ("LOCALHOST_SINGLE_FAMILY", "unknown process port 8000/tcp")
    ]
    off = make_snapshot(rows, stack=StackFacts(ipv6_disabled_all=True))
    assert check_exposure(off) == []
    v6 = check_exposure(make_snapshot([listener("tcp", "::1", 8000)]))
    assert (
        "listens on ::1 only" in v6[0].evidence
    )  # IPv6 disabled does not excuse a ::1-only listener


def test_accept_queue_full():
    snap = make_snapshot(
        [
            listener("tcp", "127.0.0.1", 8000, accept_queue=128, backlog=128),
            listener("tcp", "::1", 8000, accept_queue=3, backlog=128),
        ]
    )
    full = [f for f in check_exposure(snap) if f.code == "ACCEPT_QUEUE_FULL"]
    assert len(full) == 1 and "accept queue 128 of backlog 128" in full[0].evidence


def _rows(*socks, procs=()):
    return find_listeners(make_snapshot(list(socks), list(procs)))


def test_fingerprint_names_a_sensitive_service_nobody_else_can():
    """Unprivileged: no owner, odd port; the fingerprint alone says Redis."""
    (row,) = _rows(listener("tcp", "0.0.0.0", 40123))
    assert sensitive_service_of(row) is None
    assert sensitive_service_of(row, "redis") is SENSITIVE_PORTS[(Proto.TCP, 6379)]
    (f,) = [
        f
        for f in check_exposure(
            make_snapshot([row.socket]), fingerprints={listener_key(row): "redis"}
        )
        if f.code == "EXPOSED_SENSITIVE_SERVICE"
    ]
    assert f.subject == "unknown process 0.0.0.0:40123/tcp" and f.severity is Severity.HIGH
    assert "identified by fingerprint 'redis'" in f.evidence
    assert (
        check_exposure(make_snapshot([row.socket]), fingerprints={listener_key(row): "http"}) == []
    )


def test_port_clue_without_owner_and_process_clue_without_port():
    (by_port,) = _rows(listener("tcp", "0.0.0.0", 6379))
    pg = proc(12, "postgres")
    (by_name,) = _rows(listener("tcp", "::", 15432, owners=[pg], v6only=False), procs=[pg])
    (fp, nm) = (
        check_exposure(make_snapshot([by_port.socket]))[0],
        check_exposure(make_snapshot([by_name.socket], [pg]))[0],
    )
    assert "identified by well-known port" in fp.evidence
    assert "identified by process name" in nm.evidence


def test_verdict_without_finding_is_unknown_only_when_no_clue_names_the_listener():
    web = proc(13, "python3")
    rows = {
        (r.local.port, str(r.local.address)): r
        for r in _rows(
            listener("tcp", "0.0.0.0", 40123),  # wildcard, no owner, odd port
            listener("tcp", "127.0.0.1", 40124),  # loopback: no other host reaches it
            listener("tcp", "0.0.0.0", 40125, owners=[web]),  # owner known, not sensitive
            listener("tcp", "0.0.0.0", 443),  # public well-known port
            listener("udp", "0.0.0.0", 5353),
            listener("tcp", "192.0.2.2", 40126),  # own address, no owner
            procs=[web],
        )
    }
    assert verdict_without_finding(rows[(40123, "0.0.0.0")]) == "unknown"
    assert verdict_without_finding(rows[(40123, "0.0.0.0")], "unknown") == "unknown"
    assert verdict_without_finding(rows[(40123, "0.0.0.0")], "closed") == "unknown"
    assert verdict_without_finding(rows[(40123, "0.0.0.0")], "http") == "ok"
    assert verdict_without_finding(rows[(40124, "127.0.0.1")]) == "ok"
    assert verdict_without_finding(rows[(40125, "0.0.0.0")]) == "ok"
    assert verdict_without_finding(rows[(443, "0.0.0.0")]) == "ok"
    assert verdict_without_finding(rows[(5353, "0.0.0.0")]) == "ok"
    assert verdict_without_finding(rows[(40126, "192.0.2.2")]) == "unknown"
