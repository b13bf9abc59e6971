"""Routing records: routes of a table and the FIB's answer to a lookup (read by
:mod:`loopscope.backends.linux.routes`; stdlib only, no I/O).
"""

from __future__ import annotations

from dataclasses import dataclass

from loopscope.model.records import IPAddress

__all__ = ["RouteEntry", "RouteLookup"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteEntry:
    """One route of a routing table (netlink RTM_NEWROUTE)."""

    family: int
    """4 or 6."""
    table: int
    """Routing table id: 255 local, 254 main, 253 default."""
    type: str
    """Route type as ``ip route`` names it: ``unicast``, ``local``, ``broadcast``, ``unreachable``..."""
    dst: str
    """Destination prefix, ``127.0.0.0/8``; ``default`` for a zero-length prefix."""
    dev: str | None = None
    """Output interface name (RTA_OIF), None if absent."""
    gateway: IPAddress | None = None
    """Next hop (RTA_GATEWAY), None for direct routes."""
    prefsrc: IPAddress | None = None
    """Preferred source address (RTA_PREFSRC)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteLookup:
    """The answer to ``ip route get ADDRESS`` (RTM_GETROUTE without NLM_F_DUMP): the FIB's real choice,
    policy rules included."""

    address: IPAddress
    """The address looked up."""
    type: str | None = None
    """Route type chosen (``local`` for the host's own addresses), None on error."""
    dev: str | None = None
    """Output interface chosen (``lo`` for local routes)."""
    error: str | None = None
    """``Network is unreachable (errno 101)`` when the lookup failed."""
