"""Per-namespace sysctls and kernel counters beyond :class:`~loopscope.model.StackFacts` (read by
:mod:`loopscope.backends.linux.sysctl`; stdlib only, no I/O).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Sysctls"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sysctls:
    """Sysctls the doctor needs beyond :class:`~loopscope.model.StackFacts` (per namespace)."""

    route_localnet: dict[str, bool] = field(default_factory=dict)
    """``net.ipv4.conf.<if>.route_localnet`` for ``all``, ``default`` and every interface."""
    ipv6_module: bool = True
    """False when /proc/sys/net/ipv6 does not exist (kernel booted with ``ipv6.disable=1``)."""
    martian_src: int | None = None
    """Packets dropped with a martian source (``/proc/net/stat/rt_cache`` in_martian_src, all CPUs)."""
    martian_dst: int | None = None
    """Packets dropped with a martian destination (in_martian_dst, all CPUs)."""
    icmp_echo_ignore_v4: bool | None = None
    """net.ipv4.icmp_echo_ignore_all: the kernel answers no IPv4 echo request."""
    icmp_echo_ignore_v6: bool | None = None
    """net.ipv6.icmp.echo_ignore_all: the kernel answers no ICMPv6 echo request."""
    conntrack_count: int | None = None
    """net.netfilter.nf_conntrack_count (this namespace); None when conntrack is not loaded."""
    conntrack_max: int | None = None
    """net.netfilter.nf_conntrack_max; when the table is full, new connections are dropped, loopback too."""
