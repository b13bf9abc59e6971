"""Recorded watch windows for the TUI tests, built with the event builders of
tests/unit/analysis/watch/test_report.py (known ground truth per connection)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from loopscope.analysis.watch.model import WatchData


def builders() -> ModuleType:
    """The builders module (loaded by path: test modules are not a package)."""
    path = Path(__file__).parents[1] / "analysis" / "watch" / "test_report.py"
    spec = importlib.util.spec_from_file_location("watch_report_builders", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def self_calling_window() -> WatchData:
    """gunicorn[10,11] on :8080 calls itself 3 times per external request (4 from loadgen[99]); an
    nginx[20] on :80 with a saturated accept queue (backlog 4) and no traffic."""
    b = builders()
    conns, samples, procs = b.self_calling_app(n=3, externals=4)
    nginx = b.proc(20, "nginx")
    samples = tuple(
        b.sample(
            s.at_ns / 1e9,
            *s.listeners,
            b.listener(80, nginx, queue=4 if k else 1, backlog=4),
        )
        for k, s in enumerate(samples)
    )
    return b.data(conns, samples, (b.EBPF, b.DESTROY), procs)


def http_window() -> WatchData:
    """The self-calling gunicorn of :func:`self_calling_window` with the HTTP capture on: loadgen[99]
    sends 4 ``GET /work``, each making 3 self-calls ``GET /leaf``; plus 2 ``GET /health`` from an
    external client (10.0.0.5, no pid)."""
    b = builders()
    conns, samples, procs = b.self_calling_app(n=3, externals=4)
    conns += [
        b.Conn(45000 + k, 8080, None, 6 + k, path="/health", addr="10.0.0.5") for k in range(2)
    ]
    return b.data(conns, samples, (b.EBPF, b.DESTROY, b.HTTP), procs)


def short_lived_clients(n: int = 50) -> WatchData:
    """``n`` short-lived ``curl`` processes (pids 1000..), one connection each, all exited before
    /proc was read (eBPF gave pid and comm), to apache2[10] on :8095, which calls itself twice."""
    b = builders()
    apache = b.proc(10, "apache2")
    conns = [b.named(b.Conn(40000 + k, 8095, 1000 + k, 1 + k * 0.1), "curl") for k in range(n)]
    conns += [b.named(b.Conn(42000 + k, 8095, 10, 7 + k * 0.1), "apache2") for k in range(2)]
    samples = (b.sample(0.5, b.listener(8095, apache)), b.sample(9.5, b.listener(8095, apache)))
    return b.data(conns, samples, (b.EBPF, b.DESTROY), {10: apache})
