"""Detect the Nagle + delayed-ACK stall in a series of request latencies (pure, no I/O).

The stall: a server writes a response in two sends (headers, then body) on a socket without
TCP_NODELAY. The first small segment leaves at once; Nagle's algorithm holds the second until the
first is acknowledged; the client has nothing to send, so it delays its ACK until the delayed-ACK timer
fires (Linux ``TCP_DELACK_MIN`` = HZ/25 = 40 ms, include/net/tcp.h; the timer grows towards
``TCP_DELACK_MAX`` = 200 ms only when the ACK timeout estimate grows). On loopback, where a request
otherwise takes 0.05-1 ms, the requests then cluster tightly just above 40 ms, with nothing between
the fast mode and the cluster. Linux's quick-ACK mode at connection start lets the first requests of a
connection through fast, so the signature is usually "most requests at ~40-44 ms".

Example:
    >>> f = find_nagle_stall([41_500_000] * 20 + [90_000] * 2)
    >>> f.code if f else None
    'NAGLE_DELAYED_ACK_STALL'
    >>> find_nagle_stall([90_000] * 22) is None
    True
"""

from __future__ import annotations

from collections.abc import Sequence

from loopscope.analysis.stats import median
from loopscope.model import Finding, Severity

__all__ = [
    "NAGLE_CODE",
    "STALL_HIGH_NS",
    "STALL_LOW_NS",
    "find_nagle_stall",
]

NAGLE_CODE = "NAGLE_DELAYED_ACK_STALL"
STALL_LOW_NS = 36_000_000
"""Lower edge of the stall window: the 40 ms timer minus jitter."""
STALL_HIGH_NS = 60_000_000
"""Upper edge of the stall window: 40 ms timer plus a slow request and scheduling delay."""
_GAP_LOW_NS = 8_000_000
"""Requests between this and STALL_LOW_NS are 'in between' and argue against a timer-made cluster."""
_MIN_STALLED = 3
_MIN_STALLED_FRACTION = 0.2
_MAX_SPREAD_NS = 12_000_000
"""The middle 80 % of the stalled requests lie within this range (a timer, not a slow server)."""


def find_nagle_stall(
    latencies_ns: Sequence[int],
    *,
    split_sends: bool | None = None,
    subject: str = "requests",
) -> Finding | None:
    """Flag the ~40 ms Nagle + delayed-ACK stall in per-request latencies.

    Flags when at least 3 requests and at least 20 % of all requests lie in the stall window
    (36-60 ms), those stalled requests form a tight cluster (middle 80 % within 12 ms: a timer, not a
    slow handler), and fewer requests lie in the 8-36 ms gap than a quarter of the stalled ones.

    Args:
        latencies_ns: request/response latencies in nanoseconds, in any order.
        split_sends: whether the server is known to write one response in several sends (True),
            known to write it in one (False), or unknown (None). Known split sends make the finding
            medium severity, unknown low; known single sends make a cluster unlikely to be Nagle and
            the finding says so (severity info).
        subject: what the latencies are of, for the finding (e.g. ``"GET http://127.0.0.1:8080/"``).

    Returns:
        A Finding with code ``NAGLE_DELAYED_ACK_STALL``, or None when the signature is absent.
    """
    n = len(latencies_ns)
    if n == 0:
        return None
    stalled = sorted(v for v in latencies_ns if STALL_LOW_NS <= v <= STALL_HIGH_NS)
    k = len(stalled)
    if k < _MIN_STALLED or k < _MIN_STALLED_FRACTION * n:
        return None
    lo = stalled[int(0.1 * (k - 1))]
    hi = stalled[round(0.9 * (k - 1))]
    if hi - lo > _MAX_SPREAD_NS:
        return None
    between = sum(1 for v in latencies_ns if _GAP_LOW_NS <= v < STALL_LOW_NS)
    if between * 4 > k:
        return None
    fast = [v for v in latencies_ns if v < _GAP_LOW_NS]
    fast_text = f"; the other {len(fast)} took a median {median(fast) / 1e6:.2f} ms" if fast else ""
    if split_sends is True:
        severity, why = Severity.MEDIUM, " The server wrote each response in several sends."
    elif split_sends is False:
        severity = Severity.INFO
        why = (
            " The server wrote each response in one send, so Nagle on the server is unlikely;"
            " look for a client writing a request in pieces, or a 40 ms timer in the handler."
        )
    else:
        severity, why = Severity.LOW, ""
    evidence = (
        f"{k} of {n} {subject} took {stalled[0] / 1e6:.1f}-{stalled[-1] / 1e6:.1f} ms"
        f" (median {median(stalled) / 1e6:.1f} ms){fast_text}: the 40 ms delayed-ACK timer"
        f" releasing a segment that Nagle's algorithm held back.{why}"
    )
    remedy = (
        "Set TCP_NODELAY on the server's sockets (Python http.server: disable_nagle_algorithm ="
        " True; most servers have a tcp_nodelay option), or write headers and body in one send"
        " (sendmsg/writev or one buffered flush)."
    )
    return Finding(
        code=NAGLE_CODE,
        severity=severity,
        subject=subject,
        evidence=evidence,
        remedy=remedy,
    )
