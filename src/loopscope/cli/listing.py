"""The typer-free half of ``loopscope ports``: the listener JSON shape and the listener filters.

Shared by the typer command (:mod:`loopscope.cli.ports`) and the start-up fast path
(:mod:`loopscope.cli.fastpath`), which runs ``ports --json`` without importing typer or rich, so both
produce the same bytes.
"""

from __future__ import annotations

from typing import Any

from loopscope.analysis.listeners import Listener
from loopscope.errors import UsageError
from loopscope.model import Scope
from loopscope.render.jsonable import to_jsonable

__all__ = ["listener_json", "select_listeners"]


def listener_json(row: Listener) -> dict[str, Any]:
    """JSON shape of one listener."""
    return {
        "proto": row.proto.value,
        "family": row.family.value,
        "address": str(row.local.address),
        "port": row.local.port,
        "scope": row.scope.value,
        "reach": row.reach,
        "v6only": row.v6only,
        "accept_queue": row.accept_queue,
        "backlog": row.backlog,
        "uid": row.uid,
        "inode": row.inode,
        "netns": row.netns_label,
        "netns_id": to_jsonable(row.netns),
        "processes": [
            {"pid": p.pid, "comm": p.comm, "user": p.user, "uid": p.uid, "cmdline": list(p.cmdline)}
            for p in row.owners
        ],
    }


def select_listeners(
    listeners: list[Listener],
    *,
    port: int | None,
    pid: int | None,
    scope: str | None,
    proto: str | None,
) -> list[Listener]:
    """Filter listeners.

    Raises:
        UsageError: unknown scope/proto value, or nothing matches the port or pid asked for.
    """
    out = listeners
    if scope is not None:
        if scope == "host":
            raise UsageError(
                "scope 'host' is now 'own-address' (one of this host's own addresses; "
                "iproute2's 'scope host' means loopback)"
            )
        try:
            wanted = Scope(scope)
        except ValueError:
            raise UsageError(
                f"unknown scope {scope!r}: use loopback, wildcard, own-address or other"
            ) from None
        out = [r for r in out if r.scope is wanted]
    if proto is not None:
        if proto not in ("tcp", "udp"):
            raise UsageError(f"unknown protocol {proto!r}: use tcp or udp")
        out = [r for r in out if r.proto.value == proto]
    if port is not None:
        if not 0 < port < 65536:
            raise UsageError(f"port {port} out of range 1-65535")
        out = [r for r in out if r.local.port == port]
        if not out:
            raise UsageError(f"nothing listens on port {port}")
    if pid is not None:
        out = [r for r in out if any(p.pid == pid for p in r.owners)]
        if not out:
            raise UsageError(
                f"process {pid} owns no listener (or it does not exist, or is not readable)"
            )
    return out
