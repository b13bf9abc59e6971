"""Results of active reachability probes: ICMP echo (:mod:`loopscope.backends.linux.icmp`) and the
doctor's TCP/UDP echo through a listener it starts itself (:mod:`loopscope.doctor.probes`); stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass

from loopscope.model.records import IPAddress

__all__ = ["EchoResult", "IcmpResult"]


@dataclass(frozen=True, slots=True, kw_only=True)
class IcmpResult:
    """ICMP echo to one address."""

    target: IPAddress
    """Address pinged."""
    method: str
    """``raw`` (SOCK_RAW, needs CAP_NET_RAW), ``dgram`` (unprivileged ICMP socket) or ``none``."""
    sent: int = 0
    """Echo requests sent."""
    received: int = 0
    """Matching echo replies received."""
    rtts_us: tuple[float, ...] = ()
    """Round-trip time of each reply, microseconds (user space to user space)."""
    error: str | None = None
    """Why it could not be sent or answered (``sendto: Network is unreachable``), None when fine."""
    skipped_reason: str | None = None
    """Set when no ICMP socket can be opened here (not root and gid outside ping_group_range)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EchoResult:
    """A TCP or UDP echo through a listener the doctor started itself."""

    proto: str
    """``tcp`` or ``udp``."""
    address: IPAddress
    """Address the listener was bound to and the client connected to."""
    port: int | None = None
    """Port the listener got (bound to port 0), None if bind failed."""
    phase: str = "done"
    """Where it stopped: ``bind``, ``connect``, ``send``, ``recv`` or ``done``."""
    connect_us: float | None = None
    """TCP connect() time, microseconds."""
    rtts_us: tuple[float, ...] = ()
    """1-byte request/response round trips, microseconds."""
    error: str | None = None
    """The error that stopped it (``connect: Connection refused``), None when fine."""
    skipped_reason: str | None = None
    """Set when the address cannot be expected to work (IPv6 disabled), so nothing was tried."""
