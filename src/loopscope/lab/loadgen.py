"""Open-loop HTTP load generator for loopback targets (wrk2-style, without coordinated omission).

Request ``i`` is due at ``start + i / rate``; it is sent then whatever happened to earlier requests
(each on its own connection), and its latency counts from that *intended* time, so a stalled server
shows up as latency instead of a slower sender. Bounded: at most ``max_requests`` requests, no send after
``duration_s``, and every request gives up after ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field

from loopscope.analysis.stats import LatencySummary, percentile_with_failures, summarize_latencies
from loopscope.errors import UsageError

__all__ = ["LoadResult", "run_load"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    """What one open-loop run measured."""

    rate_per_s: float
    """Intended constant arrival rate, requests per second."""
    sent: int
    """Requests sent."""
    ok: int
    """Responses with status 2xx within the timeout."""
    errors: int
    """Responses with another status, or connections refused/reset."""
    timeouts: int
    """Requests without a response within ``timeout_s``."""
    send_window_s: float
    """Seconds from the first intended send to the last."""
    goodput_per_s: float
    """``ok / (sent / rate)``: successful responses per second of offered load."""
    latency: LatencySummary | None
    """Latency of 2xx responses, from the intended send time, seconds; None without one (JSON:
    :func:`~loopscope.analysis.stats.latency_json_s`)."""
    p99_all_s: float | None
    """p99 over every request, a failed or timed-out one counting as ``timeout_s``."""
    max_send_lag_s: float
    """Largest delay between a request's intended and actual send time (the generator's own lag)."""
    latencies_s: tuple[float, ...] = field(repr=False)
    """Every 2xx latency, seconds, in completion order."""


async def _one(host: str, port: int, request: bytes, timeout_s: float) -> int:
    """Send one request on a new connection; the status code, 0 on a connection error."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        line = await reader.readline()
        await reader.read()  # Connection: close -> read to EOF
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    finally:
        writer.close()


async def _run(
    host: str, port: int, path: str, rate: float, count: int, timeout_s: float
) -> LoadResult:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    latencies: list[float] = []
    counts = {"ok": 0, "errors": 0, "timeouts": 0}
    max_lag = 0.0

    async def shoot(intended: float) -> None:
        try:
            status = await asyncio.wait_for(_one(host, port, request, timeout_s), timeout_s)
        except asyncio.TimeoutError:
            counts["timeouts"] += 1
            return
        except OSError:
            counts["errors"] += 1
            return
        if 200 <= status < 300:
            counts["ok"] += 1
            latencies.append(loop.time() - intended)
        else:
            counts["errors"] += 1

    tasks = []
    for i in range(count):
        intended = start + i / rate
        delay = intended - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        max_lag = max(max_lag, loop.time() - intended)
        tasks.append(asyncio.ensure_future(shoot(intended)))
    await asyncio.gather(*tasks)
    window = count / rate
    return LoadResult(
        rate_per_s=rate,
        sent=count,
        ok=counts["ok"],
        errors=counts["errors"],
        timeouts=counts["timeouts"],
        send_window_s=window,
        goodput_per_s=counts["ok"] / window,
        latency=summarize_latencies(latencies) if latencies else None,
        p99_all_s=percentile_with_failures(latencies, count - counts["ok"], 99.0, timeout_s),
        max_send_lag_s=max_lag,
        latencies_s=tuple(latencies),
    )


def run_load(
    hostport: str,
    path: str,
    *,
    rate_per_s: float,
    duration_s: float,
    timeout_s: float = 2.0,
    max_requests: int = 20_000,
) -> LoadResult:
    """Run an open-loop load against ``http://hostport/path`` on loopback.

    Args:
        hostport: ``127.0.0.1:PORT`` (loopback addresses only).
        path: request path with query string.
        rate_per_s: constant arrival rate (> 0).
        duration_s: sending window; ``min(max_requests, rate * duration)`` requests are sent.
        timeout_s: per-request client timeout; the run ends at most ``timeout_s`` after the last send.
        max_requests: hard cap on requests.

    Raises:
        UsageError: a non-loopback target or a non-positive rate/duration.
    """
    host, _, port_text = hostport.rpartition(":")
    try:
        if not ipaddress.ip_address(host.strip("[]")).is_loopback:
            raise UsageError(f"lab load only goes to loopback addresses, not {host}")
        port = int(port_text)
    except ValueError as exc:
        raise UsageError(f"bad target {hostport!r}: use 127.0.0.1:PORT") from exc
    if rate_per_s <= 0 or duration_s <= 0 or timeout_s <= 0:
        raise UsageError("rate, duration and timeout must be > 0")
    count = max(1, min(max_requests, round(rate_per_s * duration_s)))
    # bounded: count sends over count / rate seconds, each request cancelled after timeout_s
    return asyncio.run(_run(host.strip("[]"), port, path, rate_per_s, count, timeout_s))
