"""Diagnosis (pure): probe results joined with listener tables built by loopscope.testing.factories."""

from __future__ import annotations

from dataclasses import replace

from loopscope.analysis.firewall.evaluate import parse_iptables_save
from loopscope.analysis.listeners import find_listeners
from loopscope.analysis.probe.diagnose import covers, diagnose
from loopscope.model.probe import AddressResult, Attempt, Candidate, TlsInfo
from loopscope.testing.factories import listener, make_snapshot, proc

PORT = 8080


def _res(
    addr: str,
    label: str | None = None,
    *,
    ok: bool,
    error: str = "ECONNREFUSED",
    phase: str = "connect",
    tls: TlsInfo | None = None,
) -> AddressResult:
    att = Attempt(
        address=addr,
        port=PORT,
        ok=ok,
        connect_s=0.0001 if ok else None,
        tls=tls,
        error=None if ok else error,
        phase=None if ok else phase,
    )
    return AddressResult(
        candidate=Candidate(address=addr, label=label or addr, family=6 if ":" in addr else 4),
        attempts=(att,),
    )


def _listeners(*binds: str, **kw):  # type: ignore[no-untyped-def]
    web = proc(42, "python3")
    return find_listeners(
        make_snapshot([listener("tcp", b, PORT, owners=[web], **kw) for b in binds], [web])
    )


def _codes(findings) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.code for f in findings]


def test_covers() -> None:
    (v4,) = _listeners("0.0.0.0")
    assert covers(v4, "192.0.2.2") and covers(v4, "127.0.0.1") and not covers(v4, "::1")
    (dual,) = _listeners("::", v6only=False)
    assert covers(dual, "::1") and covers(dual, "127.0.0.1")
    (v6,) = _listeners("::", v6only=True)
    assert covers(v6, "::1") and not covers(v6, "127.0.0.1")
    (lo,) = _listeners("127.0.0.1")
    assert covers(lo, "127.0.0.1") and not covers(lo, "192.0.2.2") and not covers(lo, "127.0.0.2")


def test_loopback_only_on_host_address() -> None:
    results = [_res("127.0.0.1", ok=True), _res("192.0.2.2", "host eth0", ok=False)]
    fs = diagnose(results, port=PORT, listeners=_listeners("127.0.0.1"))
    assert _codes(fs) == ["PROBE_NOT_BOUND_TO_ADDRESS"]
    assert "127.0.0.1:8080 (python3 pid 42)" in fs[0].evidence
    assert fs[0].remedy.startswith("bind to 0.0.0.0 or the host address")


def test_all_ok_means_no_findings() -> None:
    results = [_res("127.0.0.1", ok=True), _res("192.0.2.2", ok=True)]
    assert diagnose(results, port=PORT, listeners=_listeners("0.0.0.0")) == []


def test_v6_only_listener_and_localhost_order() -> None:
    results = [
        _res("127.0.0.1", "127.0.0.1 (localhost #1)", ok=False),
        _res("::1", "::1 (localhost #2)", ok=True),
    ]
    fs = diagnose(results, port=PORT, listeners=_listeners("::1"))
    assert set(_codes(fs)) == {"PROBE_NOT_BOUND_TO_ADDRESS", "PROBE_LOCALHOST_FIRST_FAILS"}
    bound = next(f for f in fs if f.code == "PROBE_NOT_BOUND_TO_ADDRESS")
    assert "127.0.0.1" in bound.remedy


def test_nothing_listening_vs_other_netns() -> None:
    results = [_res("127.0.0.1", ok=False)]
    assert _codes(diagnose(results, port=PORT, listeners=[])) == ["PROBE_NOTHING_LISTENING"]
    other = [replace(li, netns_label="blue") for li in _listeners("127.0.0.1")]
    fs = diagnose(results, port=PORT, listeners=[], other_netns=other)
    assert _codes(fs) == ["PROBE_LISTENER_IN_OTHER_NETNS"] and "blue" in fs[0].evidence
    # a listener on another port here does not count
    web = proc(7, "x")
    elsewhere = find_listeners(
        make_snapshot([listener("tcp", "127.0.0.1", 9999, owners=[web])], [web])
    )
    assert _codes(diagnose(results, port=PORT, listeners=elsewhere)) == ["PROBE_NOTHING_LISTENING"]


def test_firewall_rule_explains_a_timeout_and_absent_rule_does_not() -> None:
    rules = parse_iptables_save(
        f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -p tcp --dport {PORT} -j DROP\nCOMMIT\n"
    )
    results = [_res("127.0.0.1", ok=False, error="ETIMEDOUT")]
    fs = diagnose(results, port=PORT, listeners=_listeners("127.0.0.1"), ruleset=rules)
    assert _codes(fs) == ["PROBE_FIREWALL_BLOCKS"] and "--dport 8080 -j DROP" in fs[0].evidence
    other = parse_iptables_save(
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -p tcp --dport 9 -j DROP\nCOMMIT\n"
    )
    fs2 = diagnose(results, port=PORT, listeners=_listeners("127.0.0.1"), ruleset=other)
    assert _codes(fs2) == ["PROBE_UNEXPLAINED_FAILURE"]


def test_accept_queue_full_and_not_full() -> None:
    results = [_res("127.0.0.1", ok=False, error="ETIMEDOUT")]
    fs = diagnose(
        results, port=PORT, listeners=_listeners("127.0.0.1", accept_queue=129, backlog=128)
    )
    assert _codes(fs) == ["PROBE_ACCEPT_QUEUE_FULL"] and "backlog 128" in fs[0].evidence
    fs2 = diagnose(
        results, port=PORT, listeners=_listeners("127.0.0.1", accept_queue=3, backlog=128)
    )
    assert _codes(fs2) == ["PROBE_UNEXPLAINED_FAILURE"]


def test_nagle_cluster_and_fast_series() -> None:
    ok = [_res("127.0.0.1", ok=True)]
    stalled = {"127.0.0.1": [41_000_000] * 10 + [200_000] * 2}
    assert _codes(diagnose(ok, port=PORT, listeners=[], latencies_ns=stalled)) == [
        "NAGLE_DELAYED_ACK_STALL"
    ]
    fast = {"127.0.0.1": [200_000] * 12}
    assert diagnose(ok, port=PORT, listeners=[], latencies_ns=fast) == []


def test_tls_certificate_expiry() -> None:
    def tls(days: float) -> TlsInfo:
        return TlsInfo(
            version="TLSv1.3",
            cipher="x",
            handshake_s=0.001,
            subject="CN=localhost",
            not_after="2026-01-01T00:00:00+00:00",
            expires_in_s=days * 86400,
        )

    assert _codes(diagnose([_res("127.0.0.1", ok=True, tls=tls(-1))], port=PORT, listeners=[])) == [
        "PROBE_TLS_CERT_EXPIRED"
    ]
    assert _codes(diagnose([_res("127.0.0.1", ok=True, tls=tls(3))], port=PORT, listeners=[])) == [
        "PROBE_TLS_CERT_EXPIRING"
    ]
    assert diagnose([_res("127.0.0.1", ok=True, tls=tls(90))], port=PORT, listeners=[]) == []


def test_protocol_failure_after_connect() -> None:
    results = [_res("127.0.0.1", ok=False, error="not HTTP", phase="read")]
    fs = diagnose(results, port=PORT, listeners=_listeners("127.0.0.1"))
    assert _codes(fs) == ["PROBE_UNEXPLAINED_FAILURE"] and "read failed" in fs[0].evidence
