"""Typed records shared by every layer (stdlib only, no I/O)."""

from __future__ import annotations

from loopscope.model.records import (
    Endpoint,
    Family,
    Finding,
    Gap,
    InterfaceAddress,
    IPAddress,
    LinkInfo,
    NetnsId,
    ProcessInfo,
    ProcessKey,
    Proto,
    Scope,
    Severity,
    Snapshot,
    SocketRecord,
    StackFacts,
    TcpInfo,
    TcpState,
)

__all__ = [
    "Endpoint",
    "Family",
    "Finding",
    "Gap",
    "IPAddress",
    "InterfaceAddress",
    "LinkInfo",
    "NetnsId",
    "ProcessInfo",
    "ProcessKey",
    "Proto",
    "Scope",
    "Severity",
    "Snapshot",
    "SocketRecord",
    "StackFacts",
    "TcpInfo",
    "TcpState",
]
