"""Run a path benchmark: start the servers, time each path and size the same way, collect a report.

The method, identical for every path: warm up, then read ``perf_counter_ns()`` once after each
round trip and record the difference to the previous read (one round trip plus the loop's ~0.1 us
of bookkeeping) into an HDR-style histogram (:mod:`loopscope.analysis.stats`). A round trip is a Python callable made by
:func:`loopscope.bench.paths.open_round_trip`; for the in-process path it calls a function that
returns a ready response, so the ratio to it shows what the transport adds.

With the native engine (``--engine native``, or ``auto`` when ``rr.c`` compiles here) the same
loop runs in C (:mod:`loopscope.bench.native`): one ``CLOCK_MONOTONIC`` read per round trip on the
client, ``ls_echo`` in the server, and the in-process baseline is a call of a non-inlined C
function copying a ready response. HTTP always runs in Python; each cell records its engine.
"""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable
from dataclasses import replace

from loopscope.analysis.bench.nagle import find_nagle_stall
from loopscope.analysis.bench.results import (
    BenchConfig,
    BenchReport,
    CellResult,
    Engine,
    PinMode,
    ThroughputResult,
    ratio_to_call,
)
from loopscope.analysis.stats import LogHistogram, throughput_bytes_per_s
from loopscope.bench.native import load_native, resolve_engine
from loopscope.bench.paths import (
    IO_TIMEOUT_S,
    PATH_LABELS,
    PATHS,
    STREAM_PATHS,
    UDP_MAX_PAYLOAD_BYTES,
    NativeRoundTrip,
    RoundTrip,
    SmallStreamRoundTrip,
    find_host_address,
    measure_stream_throughput,
    open_round_trip,
)
from loopscope.bench.server import (
    MAX_MESSAGE_BYTES,
    BenchError,
    ServerProcess,
    pin_current_process,
)
from loopscope.errors import UsageError
from loopscope.model import Finding

__all__ = [
    "MAX_SAMPLES_PER_CELL",
    "MAX_SIZE_BYTES",
    "choose_cpus",
    "measure_round_trips",
    "measure_timer_overhead_ns",
    "run_bench",
    "validate_config",
]

MAX_SIZE_BYTES = MAX_MESSAGE_BYTES
"""Largest payload accepted (each round trip holds it in memory twice)."""
MAX_SAMPLES_PER_CELL = 2_000_000
"""Most round trips timed per path and size, whatever ``--count``: bounds memory and the histogram
work (the compiled in-process call takes ~25 ns, so a 2 s cap alone would allow ~80 million)."""
Progress = Callable[[str], None]


def choose_cpus(pin: PinMode) -> tuple[int | None, int | None]:
    """(client CPU, server CPU) for a pin mode, from the CPUs this process may use.

    Raises:
        UsageError: ``different`` on a single-CPU affinity set.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if pin is PinMode.SAME:
        return cpus[0], cpus[0]
    if pin is PinMode.DIFFERENT:
        if len(cpus) < 2:
            raise UsageError("--pin different needs two CPUs; this process may use one")
        return cpus[0], cpus[1]
    return None, None


def validate_config(config: BenchConfig) -> None:
    """Check bounds and names before anything starts.

    Raises:
        UsageError: unknown path, size out of 1..64 MiB, non-positive count or durations.
    """
    unknown = [p for p in config.paths if p not in PATHS]
    if unknown:
        raise UsageError(f"unknown path {unknown[0]!r}; known: {', '.join(PATHS)}")
    if not config.paths or not config.sizes_bytes:
        raise UsageError("need at least one path and one size")
    for s in config.sizes_bytes:
        if not 1 <= s <= MAX_SIZE_BYTES:
            raise UsageError(f"size {s} out of range 1..{MAX_SIZE_BYTES} bytes")
    if config.count < 1 or config.warmup < 0:
        raise UsageError("--count must be >= 1")
    if config.duration_s <= 0 or config.throughput_s <= 0:
        raise UsageError("durations must be > 0 seconds")


def measure_timer_overhead_ns(samples: int = 1000) -> int:
    """Smallest difference of two back-to-back ``perf_counter_ns`` calls, in ns."""
    pc = time.perf_counter_ns
    best = None
    for _ in range(samples):
        d = -pc() + pc()
        best = d if best is None or d < best else best
    return best or 0


def measure_round_trips(
    round_trip: RoundTrip, *, count: int, warmup: int, duration_s: float
) -> tuple[list[int], bool]:
    """Time ``count`` calls of ``round_trip`` after ``warmup`` untimed ones, within ``duration_s``.

    The clock is read once per round trip: sample i is ``t_i - t_(i-1)``, where ``t_i`` is read
    right after round trip i ends, so each sample holds one round trip and the loop's bookkeeping
    (an append and two compares, ~0.1 us), not two clock calls. Small stream round trips
    (:class:`~loopscope.bench.paths.SmallStreamRoundTrip`) run inlined in their own timed loop,
    without a Python call per round trip; native ones
    (:class:`~loopscope.bench.paths.NativeRoundTrip`) run the same loop in C.

    At most :data:`MAX_SAMPLES_PER_CELL` round trips are timed.

    Returns:
        (latencies in ns, in call order; True when the time cap (or the sample cap) stopped the
        loop before ``count``).
    """
    wanted = count
    count = min(count, MAX_SAMPLES_PER_CELL)
    pc = time.perf_counter_ns
    end = pc() + int(duration_s * 1e9)
    for _ in range(warmup):
        round_trip()
        if pc() > end:
            break
    end = pc() + int(duration_s * 1e9)
    if isinstance(round_trip, (SmallStreamRoundTrip, NativeRoundTrip)):
        out = round_trip.timed(count, end)
        return out, len(out) < wanted
    out = []
    append = out.append
    prev = pc()
    for _ in range(count):
        round_trip()
        now = pc()
        append(now - prev)
        prev = now
        if now > end:
            break
    return out, len(out) < wanted


def _skip_reason(path: str, size: int, host_address: str | None) -> str | None:
    if path == "tcp-host" and host_address is None:
        return "no non-loopback address on this host"
    if path == "udp4" and size > UDP_MAX_PAYLOAD_BYTES:
        return f"UDP payload max {UDP_MAX_PAYLOAD_BYTES} bytes"
    return None


def _server_error(path: str, server: ServerProcess) -> str | None:
    """Why the server child could not serve ``path`` here (IPv6 off, no 127.0.0.1), or None."""
    return server.errors.get("http" if path.startswith("http") else path)


_INTERRUPTED = "not run: interrupted"
"""Skip reason of the cells Ctrl-C (or TERM/HUP) left out."""


def _not_run(path: str, size: int, reason: str) -> CellResult:
    return CellResult(path=path, label=PATH_LABELS[path], size_bytes=size, skipped_reason=reason)


def _describe(exc: BaseException) -> str:
    """``TimeoutError`` -> ``"timed out after 5 s (IO_TIMEOUT_S)"``; other errors by errno name."""
    import errno

    if isinstance(exc, (TimeoutError, BlockingIOError)):
        return f"no answer within {IO_TIMEOUT_S:g} s (timed out)"
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{name} ({exc.strerror})"
    return f"{type(exc).__name__}: {exc}"


def _server_kinds(paths: tuple[str, ...], host_address: str | None) -> list[str]:
    kinds: list[str] = []
    for p in paths:
        kind = "http" if p.startswith("http") else p
        if kind == "call" or kind in kinds or (kind == "tcp-host" and host_address is None):
            continue
        kinds.append(kind)
    return kinds


def run_bench(config: BenchConfig, *, progress: Progress | None = None) -> BenchReport:
    """Measure every path and size of ``config``; the client runs in this process.

    Args:
        config: what to run (validated first).
        progress: called with a short description before each cell.

    Returns:
        The report with percentiles, ratios to the in-process call, throughput and findings.

    Raises:
        UsageError: bad configuration or pinning impossible here.
        BenchError: a server failed to start or a peer closed mid-run.
        BackendUnavailable: ``--engine native`` and the compiled engine does not build here.
    """
    validate_config(config)
    engine, engine_reason = resolve_engine(config.engine)
    client_cpu, server_cpu = choose_cpus(config.pin)
    host = find_host_address() if "tcp-host" in config.paths else None
    kinds = _server_kinds(config.paths, host)
    saved = os.sched_getaffinity(0)
    cells: list[CellResult] = []
    findings: list[Finding] = []
    thr: list[ThroughputResult] = []
    pin_current_process(client_cpu)
    try:
        timer_ns = measure_timer_overhead_ns()
        native_timer_ns = load_native().clock_overhead_ns() if engine is Engine.NATIVE else None
        with ServerProcess(kinds, cpu=server_cpu, host_address=host, engine=engine) as server:
            server_engine = server.engine
            stopped: str | None = None  # Ctrl-C (or TERM/HUP): keep what finished
            for path in config.paths:
                for size in config.sizes_bytes:
                    if stopped is not None:
                        cells.append(_not_run(path, size, stopped))
                        continue
                    try:
                        cells.append(
                            _run_cell(config, engine, path, size, host, server, findings, progress)
                        )
                    except KeyboardInterrupt:
                        stopped = _INTERRUPTED
                        cells.append(_not_run(path, size, stopped))
            if stopped is None:
                try:
                    cells = _python_baseline(config, cells, host, server, findings, progress)
                except KeyboardInterrupt:
                    stopped = _INTERRUPTED  # the Python call rows: left out
            if config.throughput and stopped is None:
                for path in config.paths:
                    if (
                        path not in STREAM_PATHS
                        or _skip_reason(path, 1, host)
                        or _server_error(path, server)
                    ):
                        continue
                    if progress:
                        progress(f"{PATH_LABELS[path]} stream throughput")
                    try:
                        total, elapsed = measure_stream_throughput(
                            path,
                            server,
                            duration_s=config.throughput_s,
                            max_bytes=1 << 40,
                            chunk_bytes=config.throughput_chunk_bytes,
                        )
                    except KeyboardInterrupt:
                        stopped = _INTERRUPTED
                        break
                    except (OSError, BenchError):
                        continue  # its latency cells already carry the reason
                    thr.append(
                        ThroughputResult(
                            path=path,
                            label=PATH_LABELS[path],
                            total_bytes=total,
                            elapsed_ns=elapsed,
                            bytes_per_s=throughput_bytes_per_s(total, elapsed),
                            chunk_bytes=config.throughput_chunk_bytes,
                        )
                    )
    finally:
        os.sched_setaffinity(0, saved)
    return BenchReport(
        config=config,
        client_cpu=client_cpu,
        server_cpu=server_cpu,
        host_address=host,
        timer_overhead_ns=timer_ns,
        cells=ratio_to_call(cells),
        throughput=tuple(thr),
        findings=tuple(findings),
        engine=engine,
        engine_reason=engine_reason,
        server_engine=server_engine,
        native_timer_overhead_ns=native_timer_ns,
        interrupted=stopped is not None,
    )


def _python_baseline(
    config: BenchConfig,
    cells: list[CellResult],
    host: str | None,
    server: ServerProcess,
    findings: list[Finding],
    progress: Progress | None,
) -> list[CellResult]:
    """With compiled cells and Python ones (HTTP) in one run, the Python paths need a Python call
    to compare with: add ``in-process (python)`` cells after the compiled call cells (a label no
    longer than the HTTP ones, so the table keeps its width at 80 columns)."""
    natives = [c for c in cells if c.path == "call" and c.engine is Engine.NATIVE]
    if not natives or not any(c.engine is Engine.PYTHON for c in cells if c.path != "call"):
        return cells
    extra = [
        replace(c, label="in-process (python)")
        for c in (
            _run_cell(config, Engine.PYTHON, "call", size, host, server, findings, progress)
            for size in config.sizes_bytes
        )
    ]
    at = cells.index(natives[-1]) + 1
    return [*cells[:at], *extra, *cells[at:]]


def _run_cell(
    config: BenchConfig,
    engine: Engine,
    path: str,
    size: int,
    host: str | None,
    server: ServerProcess,
    findings: list[Finding],
    progress: Progress | None,
) -> CellResult:
    label = PATH_LABELS[path]
    reason = _skip_reason(path, size, host) or _server_error(path, server)
    if reason is not None:
        return CellResult(path=path, label=label, size_bytes=size, skipped_reason=reason)
    if progress:
        progress(f"{label}, {size} B")
    try:
        rt, close = open_round_trip(path, size, server, engine=engine)
        used = Engine.NATIVE if isinstance(rt, NativeRoundTrip) else Engine.PYTHON
        try:
            lat, truncated = measure_round_trips(
                rt, count=config.count, warmup=config.warmup, duration_s=config.duration_s
            )
        finally:
            close()
    except (OSError, BenchError, http.client.HTTPException) as exc:
        # a firewall dropping loopback traffic, a family missing: this cell, not the whole run
        why = str(exc) if isinstance(exc, BenchError) else _describe(exc)
        return CellResult(path=path, label=label, size_bytes=size, skipped_reason=f"failed: {why}")
    stall = find_nagle_stall(
        lat,
        split_sends=True if path.startswith("http") else None,
        subject=f"{label} {size} B round trips",
    )
    if stall is not None:
        findings.append(stall)
    return CellResult(
        path=path,
        label=label,
        size_bytes=size,
        summary=LogHistogram.of(lat).summarize(),
        truncated=truncated,
        engine=used,
    )
