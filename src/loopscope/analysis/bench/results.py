"""Records of a path benchmark run (pure: values only, no I/O)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace

from loopscope.analysis.stats import LatencySummary
from loopscope.model import Finding

__all__ = [
    "BenchConfig",
    "BenchReport",
    "CellResult",
    "Engine",
    "PinMode",
    "ThroughputResult",
    "ratio_to_call",
]


class PinMode(str, enum.Enum):
    """Where client and server processes run."""

    SAME = "same"
    """Both on one CPU: the scheduler hands the CPU over on each message."""
    DIFFERENT = "different"
    """On two different CPUs: each message wakes the other CPU."""
    NONE = "none"
    """No pinning: the scheduler decides."""

    def __str__(self) -> str:
        return self.value


class Engine(str, enum.Enum):
    """What runs the timed round-trip loops and the echo servers."""

    AUTO = "auto"
    """Native when it compiles here, else Python (the reason is recorded)."""
    NATIVE = "native"
    """Compiled C loops (``loopscope/bench/rr.c``) on both ends, for every path but HTTP."""
    PYTHON = "python"
    """The interpreter: ``os.read``/``os.write`` loops in Python on both ends."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchConfig:
    """What to measure and the bounds of the run."""

    paths: tuple[str, ...]
    """Path names (see ``loopscope.bench.paths.PATHS``), in table order."""
    sizes_bytes: tuple[int, ...]
    """Request and response payload sizes; each path runs each size."""
    count: int = 2000
    """Measured round trips per path and size (after the warm-up)."""
    warmup: int = 50
    """Round trips run and discarded before measuring, per path and size."""
    duration_s: float = 2.0
    """Time cap per path and size; a cell stops early (``truncated``) when it is reached."""
    pin: PinMode = PinMode.NONE
    """CPU placement of client and server."""
    throughput: bool = True
    """Also measure stream throughput on the stream paths."""
    throughput_s: float = 1.0
    """Duration of each stream throughput test."""
    throughput_chunk_bytes: int = 128 * 1024
    """Size of each send in the throughput test (iperf3's default for TCP)."""
    engine: Engine = Engine.AUTO
    """The engine asked for (``--engine``); the one that ran is :attr:`BenchReport.engine`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CellResult:
    """Round-trip latency of one path at one payload size."""

    path: str
    """Path name, e.g. ``"tcp4"``."""
    label: str
    """Human label, e.g. ``"TCP 127.0.0.1"``."""
    size_bytes: int
    """Request and response payload size."""
    summary: LatencySummary | None = None
    """Percentiles in ns; None when skipped."""
    ratio_to_call: float | None = None
    """p50 of this cell / p50 of the in-process call at the same size; None without a call cell."""
    truncated: bool = False
    """The duration cap (or the per-cell sample cap of the runner) stopped the cell before
    ``count`` round trips."""
    skipped_reason: str | None = None
    """Why the cell did not run (e.g. no host address, UDP payload too large); None when it ran."""
    engine: Engine | None = None
    """The client loop that timed this cell (NATIVE or PYTHON; HTTP is always PYTHON); None when
    the cell did not run."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ThroughputResult:
    """One-way stream throughput of one path."""

    path: str
    """Path name."""
    label: str
    """Human label."""
    total_bytes: int
    """Bytes the receiver counted."""
    elapsed_ns: int
    """From the first send until the receiver's byte count arrived."""
    bytes_per_s: float
    """``total_bytes / elapsed``."""
    chunk_bytes: int
    """Size of each send."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchReport:
    """Everything one ``loopscope bench`` run measured."""

    config: BenchConfig
    """The configuration that ran."""
    client_cpu: int | None
    """CPU the client was pinned to, None when unpinned."""
    server_cpu: int | None
    """CPU the server process was pinned to, None when unpinned."""
    host_address: str | None
    """The non-loopback host address used by ``tcp-host``; None when absent."""
    timer_overhead_ns: int
    """Smallest back-to-back ``perf_counter_ns`` difference: included in every latency."""
    cells: tuple[CellResult, ...] = ()
    """One per path and size, in config order."""
    throughput: tuple[ThroughputResult, ...] = ()
    """One per stream path."""
    findings: tuple[Finding, ...] = ()
    """E.g. a Nagle + delayed-ACK stall seen in a cell."""
    engine: Engine = Engine.PYTHON
    """The engine that ran (NATIVE or PYTHON) for every path it can serve."""
    engine_reason: str | None = None
    """Why PYTHON ran although ``--engine auto`` asked for native when possible (no compiler...)."""
    server_engine: Engine = Engine.PYTHON
    """The engine of the echo servers (NATIVE or PYTHON; HTTP is always PYTHON)."""
    native_timer_overhead_ns: int | None = None
    """Smallest back-to-back ``CLOCK_MONOTONIC`` difference in C: included in every native cell;
    None with the Python engine."""
    interrupted: bool = False
    """Ctrl-C (or TERM/HUP) stopped the run: what finished is kept, the rest is left out (cells not
    run say so)."""


def ratio_to_call(cells: Sequence[CellResult]) -> tuple[CellResult, ...]:
    """Fill ``ratio_to_call`` of every measured cell from the ``call`` cell of the same size and
    engine (a path timed by the Python engine against a Python call, a compiled one against a C
    call); a cell whose engine has no call cell of its size uses any call cell of that size.

    Example: call p50 100 ns and tcp4 p50 15_000 ns at 1 byte -> tcp4's ratio 150.0.
    """
    base: dict[tuple[int, Engine | None], int] = {}
    for c in cells:
        if c.path == "call" and c.summary is not None and c.summary.p50_ns > 0:
            base.setdefault((c.size_bytes, c.engine), c.summary.p50_ns)
            base.setdefault((c.size_bytes, None), c.summary.p50_ns)
    out = []
    for c in cells:
        ratio = None
        if c.summary is not None:
            ns = base.get((c.size_bytes, c.engine)) or base.get((c.size_bytes, None))
            if ns:
                ratio = c.summary.p50_ns / ns
        out.append(replace(c, ratio_to_call=ratio))
    return tuple(out)
