"""Kernel vs trace: agreement, keep-alive, no eBPF, untraced client, sampling, untraced app, lone pair."""

from __future__ import annotations

from loopscope.analysis.apps import AppKey
from loopscope.analysis.traces.kernel import compare_kernel, kernel_findings
from loopscope.analysis.traces.report import ServiceStats, TracesReport
from loopscope.analysis.watch.report import AppStats, WatchEdge, WatchReport
from loopscope.model import ProcessKey
from loopscope.model.events import SourceStatus

SHOP = AppKey(processes=(ProcessKey(100, 1), ProcessKey(101, 2)))
RECEIVER = AppKey(processes=(ProcessKey(50, 1),))
BACKEND = AppKey(processes=(ProcessKey(60, 1),))


def _app(self_connections: int, *, ports=(8000,), self_requests=None) -> AppStats:
    return AppStats(
        key=SHOP,
        name="gunicorn[100,101]",
        pids=(100, 101),
        ports=ports,
        external_connections=20,
        external_requests=None,
        self_connections=self_connections,
        self_requests=self_requests,
        outbound_connections=11,
        outbound_requests=None,
        self_factor=None,
        total_factor=None,
        unit="connections",
        window_s=3.0,
    )


def _edge(server: AppKey, port: int, n: int) -> WatchEdge:
    return WatchEdge(
        client_app=SHOP,
        server_app=server,
        client="gunicorn",
        server="x",
        port=port,
        connections=n,
        requests=None,
        bytes_to_server=0,
        bytes_to_client=0,
        self_call=False,
        client_pids=(101,),
    )


def _watch(apps, *, ebpf: bool = True) -> WatchReport:
    return WatchReport(
        netns_label="host",
        window_s=3.0,
        started_ns=0,
        apps=tuple(apps),
        edges=(_edge(RECEIVER, 4318, 1), _edge(BACKEND, 9000, 10)),
        listeners=(),
        connections=0,
        client_pid_known=0,
        refused=0,
        client_rst=0,
        max_time_wait=0,
        max_ephemeral={},
        ephemeral_range_size=None,
        sources=(
            SourceStatus(name="ebpf_sockops", active=ebpf),
            SourceStatus(name="sock_diag_destroy", active=True),
            SourceStatus(name="snapshots", active=True),
        ),
        gaps=(),
    )


def _traces(self_calls: int, *, ports=(8000,), ratio=None, service="shop") -> TracesReport:
    return TracesReport(
        spans=0,
        traces=0,
        window_s=3.0,
        sample_ratio=ratio,
        services=(
            ServiceStats(
                service=service,
                requests=20,
                self_calls=self_calls,
                amplification=self_calls / 20,
                other_calls=10,
                waiting_share=0.5,
                ports=ports,
            ),
        ),
        endpoints=(),
        edges=(),
        worst_by_self_calls=(),
        worst_by_waiting=(),
        gaps=(),
    )


def test_one_connection_per_self_call_agrees():
    cmp = compare_kernel(_traces(50), _watch([_app(50)]), ignore_ports=(4318,))
    (row,) = cmp.rows
    assert (row.service, row.app, row.agree) == ("shop", "gunicorn[100,101]", True)
    assert row.kernel_outbound_connections == 10  # the receiver's port left out
    assert cmp.client_pid_source and cmp.sources == (
        "ebpf_sockops",
        "sock_diag_destroy",
        "snapshots",
    )
    assert kernel_findings(cmp) == ([], [])


def test_fewer_connections_than_spans_is_keep_alive_with_ebpf():
    (row,) = compare_kernel(_traces(50), _watch([_app(12)])).rows
    assert not row.agree and "keep-alive" in row.cause
    findings, gaps = kernel_findings(compare_kernel(_traces(50), _watch([_app(12)])))
    assert [f.code for f in findings] == ["TRACE_KERNEL_MISMATCH"]
    assert findings[0].subject == "shop" and "12 connections" in findings[0].evidence
    assert gaps[0].count == 38


def test_captured_requests_explain_keep_alive_and_agree():
    (row,) = compare_kernel(_traces(50), _watch([_app(12, self_requests=50)])).rows
    assert row.agree and "50 requests on 12 connections" in row.cause


def test_without_ebpf_the_cause_says_so():
    (row,) = compare_kernel(_traces(50), _watch([_app(0)], ebpf=False)).rows
    assert not row.agree and "without eBPF" in row.cause


def test_more_connections_than_spans_is_an_untraced_client_or_sampling():
    (row,) = compare_kernel(_traces(50), _watch([_app(80)])).rows
    assert not row.agree and "untraced" in row.cause
    (row,) = compare_kernel(_traces(5, ratio=0.1), _watch([_app(50)])).rows
    assert not row.agree and "sampling at 0.1" in row.cause and "0.10 of them" in row.cause


def test_lone_app_and_service_pair_without_a_common_port():
    (row,) = compare_kernel(_traces(50, ports=()), _watch([_app(50, ports=(8000,))])).rows
    assert row.agree and row.service == "shop"


def test_unmatched_app_and_service_each_get_a_row():
    two = _watch([_app(0, ports=(7000,)), _app(3, ports=(7001,))])
    rows = compare_kernel(_traces(4, ports=(8000,)), two).rows
    assert [(r.service, r.app, r.agree) for r in rows] == [
        (None, "gunicorn[100,101]", True),
        (None, "gunicorn[100,101]", False),
        ("shop", None, False),
    ]
    assert "not traced" in rows[1].cause and "no listener owned" in rows[2].cause
