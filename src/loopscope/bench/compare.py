"""Side-by-side runs of loopscope's TCP paths and the reference tools (sockperf, iperf3).

Same path, same pinning, same run: loopscope's TCP request/response on 127.0.0.1 against
``sockperf ping-pong --tcp`` (both with ``sockperf``'s smallest message, 14 bytes, full round-trip
times), and loopscope's TCP stream against ``iperf3`` (128 KiB sends, receiver-side rate). netperf,
the tool the goal was first stated against, is not packaged in Debian (non-free licence); sockperf
measures the same blocking ping-pong.

The output parsers are pure and tested on recorded outputs; the ``run_*`` functions start the
tools as subprocesses on loopback, bounded in time, and always stop their servers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

from loopscope.analysis.bench.results import Engine
from loopscope.analysis.stats import LogHistogram, throughput_bytes_per_s
from loopscope.bench.paths import measure_stream_throughput, open_round_trip
from loopscope.bench.runner import measure_round_trips
from loopscope.bench.server import BenchError, ServerProcess, pin_current_process
from loopscope.errors import ParseError

__all__ = [
    "SOCKPERF_MIN_MSG_BYTES",
    "CompareResult",
    "Iperf3Result",
    "SockperfResult",
    "parse_iperf3_json",
    "parse_sockperf_output",
    "run_compare",
    "run_iperf3",
    "run_sockperf_pingpong",
]

SOCKPERF_MIN_MSG_BYTES = 14
"""sockperf's smallest message (its own header)."""
NETPERF_NOTE = (
    "netperf not run: it is not packaged in Debian (non-free); sockperf measures the same"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SockperfResult:
    """Round-trip times from ``sockperf ping-pong --full-rtt``, in microseconds."""

    observations: int
    """Number of round trips in the valid window."""
    avg_us: float
    """Mean round trip."""
    p50_us: float
    """Median."""
    p90_us: float
    """90th percentile."""
    p99_us: float
    """99th percentile."""
    p999_us: float
    """99.9th percentile."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Iperf3Result:
    """Rates from ``iperf3 -J`` client output, in bytes per second."""

    received_bytes_per_s: float
    """Receiver-side rate (``end.sum_received``)."""
    sent_bytes_per_s: float
    """Sender-side rate (``end.sum_sent``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CompareResult:
    """One metric measured by loopscope and by a reference tool on the same path."""

    metric: str
    """``tcp_rr_p50_us``, ``tcp_rr_p99_us`` or ``tcp_stream_bytes_per_s``."""
    path: str
    """loopscope path name (``tcp4``)."""
    tool: str
    """Reference tool."""
    loopscope_value: float
    """loopscope's figure, in the metric's unit."""
    tool_value: float
    """The tool's figure, same unit."""
    ratio: float
    """``loopscope_value / tool_value``."""
    goal: str | None = None
    """The goal for this ratio, e.g. ``"<= 1.10"``; None for information only."""
    meets_goal: bool | None = None
    """Whether ``ratio`` meets ``goal``; None without a goal."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PCT = re.compile(r"--->\s+percentile\s+([0-9.]+)\s*=\s*([0-9.]+)")
_AVG = re.compile(r"avg-(?:rtt|lat|latency)=([0-9.]+)")
_OBS = re.compile(r"Total\s+(\d+)\s+observations")


def parse_sockperf_output(text: str) -> SockperfResult:
    """Parse the statistics block of ``sockperf ping-pong`` (colour codes allowed).

    Example line: ``sockperf: ---> percentile 50.000 =   16.741`` -> p50_us 16.741.

    Raises:
        ParseError: a needed line is missing.
    """
    clean = _ANSI.sub("", text)
    pct = {float(k): float(v) for k, v in _PCT.findall(clean)}
    avg = _AVG.search(clean)
    obs = _OBS.search(clean)
    for need in (50.0, 90.0, 99.0, 99.9):
        if need not in pct:
            raise ParseError(f"no percentile {need} in sockperf output", path="sockperf")
    if avg is None or obs is None:
        raise ParseError("no avg-rtt/observations in sockperf output", path="sockperf")
    return SockperfResult(
        observations=int(obs.group(1)),
        avg_us=float(avg.group(1)),
        p50_us=pct[50.0],
        p90_us=pct[90.0],
        p99_us=pct[99.0],
        p999_us=pct[99.9],
    )


def parse_iperf3_json(text: str) -> Iperf3Result:
    """Parse ``iperf3 -c ... -J`` output: ``end.sum_received/sum_sent.bits_per_second`` / 8.

    Raises:
        ParseError: not JSON, an iperf3 error document, or the fields are missing.
    """
    try:
        doc = json.loads(text)
        if "error" in doc:
            raise ParseError(f"iperf3 error: {doc['error']}", path="iperf3")
        end = doc["end"]
        return Iperf3Result(
            received_bytes_per_s=float(end["sum_received"]["bits_per_second"]) / 8.0,
            sent_bytes_per_s=float(end["sum_sent"]["bits_per_second"]) / 8.0,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ParseError(f"unreadable iperf3 JSON: {exc}", path="iperf3") from exc


# ------------------------------------------------------------------------------------ subprocesses
def _free_port(address: str) -> int:
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    needle = f":{port:04X} "
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as fh:
            for line in fh:
                cols = line.split()
                if len(cols) > 3 and cols[3] == "0A" and (cols[1] + " ").endswith(needle):
                    return True
    return False


def _pinned(cmd: list[str], cpu: int | None) -> list[str]:
    """``cmd`` run on ``cpu`` through util-linux ``taskset`` (no preexec_fn: safe with threads)."""
    if cpu is None:
        return cmd
    if shutil.which("taskset") is None:
        raise BenchError("pinning the reference tools needs taskset (Debian: util-linux)")
    return ["taskset", "-c", str(cpu), *cmd]


def _with_server(
    server_cmd: list[str],
    client_cmd: list[str],
    port: int,
    server_cpu: int | None,
    client_cpu: int | None,
    timeout_s: float,
) -> str:
    tool = server_cmd[0]
    srv = subprocess.Popen(
        _pinned(server_cmd, server_cpu), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5.0
        while not _listening(port):
            if srv.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{tool} server did not listen on port {port}")
            time.sleep(0.02)
        try:
            done = subprocess.run(
                _pinned(client_cmd, client_cpu),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{tool} client did not finish in {timeout_s:g} s") from exc
        return done.stdout + done.stderr
    finally:
        srv.terminate()
        try:
            srv.wait(3.0)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait(3.0)


def run_sockperf_pingpong(
    *,
    address: str = "127.0.0.1",
    msg_bytes: int = SOCKPERF_MIN_MSG_BYTES,
    duration_s: int = 2,
    client_cpu: int | None = None,
    server_cpu: int | None = None,
) -> SockperfResult:
    """Run ``sockperf server`` and ``sockperf ping-pong --tcp --full-rtt`` on ``address``.

    Raises:
        BenchError: sockperf missing or failed; ParseError: unreadable output.
    """
    if shutil.which("sockperf") is None:
        raise BenchError("sockperf is not installed (Debian: apt install sockperf)")
    port = _free_port(address)
    common = ["-i", address, "-p", str(port), "--tcp"]
    out = _with_server(
        ["sockperf", "server", *common],
        [
            "sockperf",
            "ping-pong",
            *common,
            "-m",
            str(msg_bytes),
            "-t",
            str(duration_s),
            "--full-rtt",
        ],
        port,
        server_cpu,
        client_cpu,
        duration_s + 15.0,
    )
    return parse_sockperf_output(out)


def run_iperf3(
    *,
    address: str = "127.0.0.1",
    duration_s: int = 2,
    chunk_bytes: int = 128 * 1024,
    client_cpu: int | None = None,
    server_cpu: int | None = None,
) -> Iperf3Result:
    """Run a one-off ``iperf3 -s`` and ``iperf3 -c -J`` on ``address``.

    Raises:
        BenchError: iperf3 missing or failed; ParseError: unreadable output.
    """
    if shutil.which("iperf3") is None:
        raise BenchError("iperf3 is not installed (Debian: apt install iperf3)")
    port = _free_port(address)
    out = _with_server(
        ["iperf3", "-s", "-1", "-B", address, "-p", str(port)],
        [
            "iperf3",
            "-c",
            address,
            "-p",
            str(port),
            "-t",
            str(duration_s),
            "-J",
            "-l",
            str(chunk_bytes),
        ],
        port,
        server_cpu,
        client_cpu,
        duration_s + 15.0,
    )
    return parse_iperf3_json(out[out.find("{") :])


def run_compare(
    *,
    client_cpu: int | None,
    server_cpu: int | None,
    rr_duration_s: int = 2,
    stream_duration_s: int = 2,
    rr_count: int = 200_000,
    engine: Engine = Engine.AUTO,
) -> tuple[list[CompareResult], list[str]]:
    """loopscope vs sockperf (TCP RR) and vs iperf3 (TCP stream) on 127.0.0.1, side by side.

    The client side of loopscope runs in this process, pinned to ``client_cpu`` for the duration;
    ``engine`` picks its round-trip loops and the server's (see ``loopscope bench --engine``).

    Returns:
        (results, notes): notes say which tools were missing and that netperf is not in Debian.
    """
    results: list[CompareResult] = []
    notes = [NETPERF_NOTE]
    saved = os.sched_getaffinity(0)
    try:
        pin_current_process(client_cpu)
        with ServerProcess(["tcp4"], cpu=server_cpu, engine=engine) as srv:
            if shutil.which("sockperf"):
                rt, close = open_round_trip("tcp4", SOCKPERF_MIN_MSG_BYTES, srv, engine=engine)
                try:
                    lat, _ = measure_round_trips(
                        rt, count=rr_count, warmup=1000, duration_s=rr_duration_s
                    )
                finally:
                    close()
                ours = LogHistogram.of(lat).summarize()
                sp = run_sockperf_pingpong(
                    duration_s=rr_duration_s, client_cpu=client_cpu, server_cpu=server_cpu
                )
                p50, p99 = ours.p50_ns / 1e3, ours.p99_ns / 1e3
                results.append(_cmp("tcp_rr_p50_us", "sockperf", p50, sp.p50_us, "<= 1.10"))
                results.append(_cmp("tcp_rr_p99_us", "sockperf", p99, sp.p99_us, None))
            else:
                notes.append("sockperf not installed: apt install sockperf")
            if shutil.which("iperf3"):
                total, elapsed = measure_stream_throughput(
                    "tcp4", srv, duration_s=stream_duration_s, max_bytes=1 << 42
                )
                ip = run_iperf3(
                    duration_s=stream_duration_s, client_cpu=client_cpu, server_cpu=server_cpu
                )
                rate = throughput_bytes_per_s(total, elapsed)
                results.append(
                    _cmp(
                        "tcp_stream_bytes_per_s", "iperf3", rate, ip.received_bytes_per_s, ">= 0.95"
                    )
                )
            else:
                notes.append("iperf3 not installed: apt install iperf3")
    finally:
        os.sched_setaffinity(0, saved)
    return results, notes


def _cmp(metric: str, tool: str, ours: float, theirs: float, goal: str | None) -> CompareResult:
    ratio = ours / theirs if theirs > 0 else float("inf")
    meets = None
    if goal is not None:
        op, limit = goal.split()
        meets = ratio <= float(limit) if op == "<=" else ratio >= float(limit)
    return CompareResult(
        metric=metric,
        path="tcp4",
        tool=tool,
        loopscope_value=ours,
        tool_value=theirs,
        ratio=ratio,
        goal=goal,
        meets_goal=meets,
    )
