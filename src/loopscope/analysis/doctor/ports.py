"""Rung 1 port checks: ephemeral port range and use, TIME_WAIT pressure, somaxconn and full accept
queues (pure, over :class:`~loopscope.analysis.stack.StackSummary` and the socket table).

Each new loopback connection takes one ephemeral port toward its destination ``addr:port``; a closed
one keeps it in TIME_WAIT for 60 s (``TCP_TIMEWAIT_LEN``, include/net/tcp.h). When the range toward one
destination is used up, connect() fails with EADDRNOTAVAIL. ``net.ipv4.tcp_tw_reuse`` 1 or 2
(2 = loopback only, the default since 5.x) lets new outgoing connections reuse TIME_WAIT ports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import partial

from loopscope.analysis.doctor.verdict import CheckResult, Verdict
from loopscope.analysis.scope import is_loopback
from loopscope.analysis.stack import StackSummary
from loopscope.model import Severity, SocketRecord, TcpState

__all__ = ["check_ephemeral", "check_somaxconn", "check_time_wait"]

SMALL_RANGE = 10_000
SMALL_SOMAXCONN = 1024


def check_ephemeral(summary: StackSummary) -> CheckResult:
    """Ephemeral range size and the ports in use, overall and toward each loopback destination.

    fail: one destination holds >= 50% of the range; warn: >= 20%, or the range is smaller than 10000.
    """
    make = partial(CheckResult, id="ports.ephemeral", rung=1, title="ephemeral ports")
    if summary.ephemeral_range is None or not summary.ephemeral_range_size:
        return make(verdict=Verdict.SKIPPED, evidence="net.ipv4.ip_local_port_range unreadable")
    low, high = summary.ephemeral_range
    size = summary.ephemeral_range_size
    top = max(summary.ephemeral_by_destination.items(), key=lambda kv: kv[1], default=None)
    evidence = f"range {low}-{high} ({size} ports); {summary.ephemeral_in_use} in use"
    if top:
        evidence += f"; busiest loopback destination {top[0]} holds {top[1]} ({top[1] / size:.0%})"
    data = {
        "range": [low, high],
        "size": size,
        "in_use": summary.ephemeral_in_use,
        "by_destination": dict(summary.ephemeral_by_destination),
    }
    remedy = (
        "reuse connections (keep-alive pools) instead of one per call; widen "
        "net.ipv4.ip_local_port_range; spread clients over more 127/8 addresses"
    )
    share = top[1] / size if top else 0.0
    if share >= 0.5:
        return make(
            verdict=Verdict.FAIL,
            code="EPHEMERAL_PORT_PRESSURE",
            evidence=evidence,
            remedy=remedy,
            data=data,
        )
    if share >= 0.2:
        return make(
            verdict=Verdict.WARN,
            code="EPHEMERAL_PORT_PRESSURE",
            evidence=evidence,
            remedy=remedy,
            data=data,
        )
    if size < SMALL_RANGE:
        return make(
            verdict=Verdict.WARN,
            severity=Severity.LOW,
            code="EPHEMERAL_RANGE_SMALL",
            data=data,
            evidence=evidence,
            remedy="sysctl -w net.ipv4.ip_local_port_range='32768 60999' (or wider)",
        )
    return make(verdict=Verdict.OK, evidence=evidence, data=data)


def check_time_wait(summary: StackSummary, sockets: Iterable[SocketRecord] = ()) -> CheckResult:
    """TIME_WAIT sockets holding ephemeral ports toward one loopback destination, against the range.

    A TIME_WAIT socket on the side that closed first keeps its 4-tuple for 60 s; when that side is the
    client, its ephemeral port toward that destination is taken. fail: the busiest destination holds
    >= 50% of the range in TIME_WAIT with tcp_tw_reuse off; warn: >= 50% with reuse on, or >= 20%.
    """
    make = partial(CheckResult, id="ports.time_wait", rung=1, title="TIME_WAIT pressure")
    size = summary.ephemeral_range_size or 28232
    low, high = summary.ephemeral_range or (32768, 60999)
    reuse = summary.tcp_tw_reuse
    per_dest: Counter[str] = Counter(
        str(s.remote)
        for s in sockets
        if s.state is TcpState.TIME_WAIT
        and low <= s.local.port <= high
        and is_loopback(s.remote.address)
    )
    top = per_dest.most_common(1)[0] if per_dest else None
    share = top[1] / size if top else 0.0
    reuse_s = (
        {0: "off", 1: "on", 2: "loopback only"}.get(reuse, "unknown")
        if reuse is not None
        else "unknown"
    )
    evidence = f"{summary.time_wait} sockets in TIME_WAIT, {summary.time_wait_loopback} on loopback"
    if top:
        evidence += (
            f"; busiest destination {top[0]} holds {top[1]} ephemeral ports ({share:.0%} of {size})"
        )
    evidence += f"; tcp_tw_reuse={reuse} ({reuse_s})"
    data = {
        "time_wait": summary.time_wait,
        "time_wait_loopback": summary.time_wait_loopback,
        "busiest_destination": top[0] if top else None,
        "busiest_count": top[1] if top else 0,
        "share": share,
        "tcp_tw_reuse": reuse,
    }
    remedy = "keep connections open (pooling) so fewer close"
    if reuse not in (1, 2):
        remedy += (
            "; sysctl -w net.ipv4.tcp_tw_reuse=2 (reuse TIME_WAIT ports for loopback connects)"
        )
    if share >= 0.5:
        verdict = Verdict.WARN if reuse in (1, 2) else Verdict.FAIL
        return make(
            verdict=verdict, code="TIME_WAIT_PRESSURE", evidence=evidence, remedy=remedy, data=data
        )
    if share >= 0.2:
        return make(
            verdict=Verdict.WARN,
            code="TIME_WAIT_PRESSURE",
            evidence=evidence,
            remedy=remedy,
            data=data,
        )
    return make(verdict=Verdict.OK, evidence=evidence, data=data)


def check_somaxconn(somaxconn: int | None, sockets: Iterable[SocketRecord]) -> CheckResult:
    """net.core.somaxconn, and listeners whose accept queue is full right now.

    warn: somaxconn < 1024 (it caps every listen() backlog; the default is 4096 since Linux 5.4), or a
    listener has ``accept_queue >= backlog`` (new connections wait or are dropped).
    """
    make = partial(CheckResult, id="ports.somaxconn", rung=1, title="somaxconn and accept queues")
    full = [
        s
        for s in sockets
        if s.state is TcpState.LISTEN
        and s.backlog
        and s.accept_queue is not None
        and s.accept_queue >= s.backlog
    ]
    listening = sum(1 for s in sockets if s.state is TcpState.LISTEN)
    evidence = f"net.core.somaxconn={somaxconn}; {listening} TCP listeners, {len(full)} with a full accept queue"
    if full:
        evidence += ": " + ", ".join(f"{s.local} ({s.accept_queue}/{s.backlog})" for s in full[:5])
    data = {"somaxconn": somaxconn, "full_queues": [str(s.local) for s in full]}
    if full:
        return make(
            verdict=Verdict.WARN,
            code="ACCEPT_QUEUE_FULL",
            evidence=evidence,
            data=data,
            remedy="the application accepts too slowly: add workers, or raise its listen() backlog "
            "together with net.core.somaxconn",
        )
    if somaxconn is None:
        return make(verdict=Verdict.SKIPPED, evidence=evidence, data=data)
    if somaxconn < SMALL_SOMAXCONN:
        return make(
            verdict=Verdict.WARN,
            severity=Severity.LOW,
            code="SOMAXCONN_SMALL",
            evidence=evidence,
            data=data,
            remedy="sysctl -w net.core.somaxconn=4096 (bursts of local connections overflow small queues)",
        )
    return make(verdict=Verdict.OK, evidence=evidence, data=data)


def check_conntrack(count: int | None, maximum: int | None) -> CheckResult:
    """The connection tracking table has room: when it is full the kernel drops new connections
    ("nf_conntrack: table full, dropping packet"), loopback ones included unless lo is ``notrack``.

    fail: >= 90% used; warn: >= 75%; skipped when conntrack is not loaded.
    """
    make = partial(CheckResult, id="conntrack", rung=1, title="conntrack table room")
    if count is None or not maximum:
        return make(verdict=Verdict.SKIPPED, evidence="nf_conntrack not loaded: nothing is tracked")
    share = count / maximum
    evidence = f"nf_conntrack_count {count} of nf_conntrack_max {maximum} ({share:.0%})"
    data = {"count": count, "max": maximum, "share": share}
    remedy = (
        "raise net.netfilter.nf_conntrack_max, shorten timeouts, or exempt loopback: "
        "nft add rule inet raw prerouting iif lo notrack (and output oif lo notrack)"
    )
    if share >= 0.9:
        return make(
            verdict=Verdict.FAIL, code="CONNTRACK_FULL", evidence=evidence, remedy=remedy, data=data
        )
    if share >= 0.75:
        return make(
            verdict=Verdict.WARN,
            code="CONNTRACK_NEARLY_FULL",
            evidence=evidence,
            remedy=remedy,
            data=data,
        )
    return make(verdict=Verdict.OK, evidence=evidence, data=data)
