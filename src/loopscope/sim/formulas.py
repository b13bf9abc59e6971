"""Closed forms for queues (pure): Erlang B and C, M/M/c waiting times, fan-out tail probability.

Sources: Kleinrock, *Queueing Systems* vol. 1 (1975), sec. 3.5 (M/M/m); Gross & Harris, *Fundamentals of
Queueing Theory*, sec. 2.3; Dean & Barroso, "The Tail at Scale", CACM 56(2), 2013.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "MmcResult",
    "erlang_b",
    "erlang_c",
    "fanout_slow_fraction",
    "mmc",
    "mmc_wait_tail",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class MmcResult:
    """Steady-state figures of an M/M/c queue (infinite queue, FCFS)."""

    servers: int
    """c, the number of servers (worker threads)."""
    offered_erlangs: float
    """a = lambda / mu, the offered load in Erlangs."""
    utilisation_pct: float
    """rho = a / c, in percent."""
    wait_prob: float
    """Erlang C: probability that an arrival has to wait (0..1)."""
    mean_wait_s: float
    """Mean time in the queue, seconds."""
    mean_response_s: float
    """Mean time in the system (queue + service), seconds."""
    mean_queue_len: float
    """Mean number waiting (Little: lambda * mean_wait_s)."""


def erlang_b(servers: int, offered_erlangs: float) -> float:
    """Erlang B blocking probability with the stable recursion B(0)=1, B(k)=a*B(k-1)/(k + a*B(k-1)).

    Example: ``erlang_b(3, 2.0) == 4/19`` (0.2105).

    Args:
        servers: c >= 1.
        offered_erlangs: a >= 0.

    Raises:
        ValueError: c < 1 or a < 0.
    """
    if servers < 1 or offered_erlangs < 0:
        raise ValueError("need servers >= 1 and offered_erlangs >= 0")
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_erlangs * b / (k + offered_erlangs * b)
    return b


def erlang_c(servers: int, offered_erlangs: float) -> float:
    """Erlang C: probability of waiting in M/M/c, C = B / (1 - rho (1 - B)).

    Example: ``erlang_c(2, 1.0) == 1/3`` (M/M/2 at rho 0.5: 2 rho^2 / (1 + rho)).

    Raises:
        ValueError: c < 1, a < 0, or a >= c (no steady state).
    """
    if offered_erlangs >= servers:
        raise ValueError(f"unstable: offered load {offered_erlangs} >= {servers} servers")
    b = erlang_b(servers, offered_erlangs)
    rho = offered_erlangs / servers
    return b / (1.0 - rho * (1.0 - b))


def mmc(arrival_rate_per_s: float, service_rate_per_s: float, servers: int) -> MmcResult:
    """Steady-state M/M/c figures: Wq = C / (c mu - lambda), W = Wq + 1/mu, Lq = lambda Wq.

    Example: ``mmc(1.0, 1.0, 2).mean_wait_s == 1/3`` s (C = 1/3, c mu - lambda = 1).

    Raises:
        ValueError: non-positive rates or lambda >= c mu.
    """
    if arrival_rate_per_s <= 0 or service_rate_per_s <= 0:
        raise ValueError("rates must be > 0")
    a = arrival_rate_per_s / service_rate_per_s
    c_prob = erlang_c(servers, a)
    wq = c_prob / (servers * service_rate_per_s - arrival_rate_per_s)
    return MmcResult(
        servers=servers,
        offered_erlangs=a,
        utilisation_pct=100.0 * a / servers,
        wait_prob=c_prob,
        mean_wait_s=wq,
        mean_response_s=wq + 1.0 / service_rate_per_s,
        mean_queue_len=arrival_rate_per_s * wq,
    )


def mmc_wait_tail(
    arrival_rate_per_s: float, service_rate_per_s: float, servers: int, t_s: float
) -> float:
    """P(queue wait > t) in M/M/c: C * exp(-(c mu - lambda) t).

    Raises:
        ValueError: as :func:`mmc`, or t < 0.
    """
    if t_s < 0:
        raise ValueError("t_s must be >= 0")
    res = mmc(arrival_rate_per_s, service_rate_per_s, servers)
    return res.wait_prob * math.exp(-(servers * service_rate_per_s - arrival_rate_per_s) * t_s)


def fanout_slow_fraction(fanout: int, slow_prob: float) -> float:
    """Share of requests that wait for at least one slow leaf: 1 - (1 - p)^n.

    Example: ``fanout_slow_fraction(100, 0.01)`` = 0.634 (Dean & Barroso: 63%).

    Raises:
        ValueError: n < 0 or p outside 0..1.
    """
    if fanout < 0 or not 0.0 <= slow_prob <= 1.0:
        raise ValueError("need fanout >= 0 and 0 <= slow_prob <= 1")
    return 1.0 - (1.0 - slow_prob) ** fanout
