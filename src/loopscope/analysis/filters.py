"""Narrow a snapshot to some ports or processes, keeping what makes the picture whole (pure)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from loopscope.model import Snapshot, SocketRecord

__all__ = ["filter_snapshot"]


def filter_snapshot(snap: Snapshot, ports: Sequence[int], pids: Sequence[int]) -> Snapshot:
    """The snapshot with only the sockets on one of ``ports`` and owned by one of ``pids`` (each
    filter applies when given), plus what keeps the picture whole: the loopback peer of each kept
    connection (same 4-tuple reversed) and the listener its server end belongs to.

    Example: a client pid 10 connected 127.0.0.1:40000 -> :8080, ``pids=[10]`` keeps its socket,
    the server's accepted socket (:8080 -> :40000) and the listener on :8080.
    """
    if not ports and not pids:
        return snap
    want_ports, want_pids = set(ports), set(pids)

    def direct(s: SocketRecord) -> bool:
        on_port = not want_ports or s.local.port in want_ports or s.remote.port in want_ports
        owned = not want_pids or any(k.pid in want_pids for k in s.owners)
        return on_port and owned

    kept = [s for s in snap.sockets if direct(s)]
    ends = {(s.proto, s.remote, s.local) for s in kept if s.remote.port}
    ports_used = {(s.proto, e.port) for s in kept for e in (s.local, s.remote) if e.port}
    ids = {id(s) for s in kept}
    for s in snap.sockets:
        if id(s) in ids:
            continue
        if (s.proto, s.local, s.remote) in ends or (
            s.is_listener and (s.proto, s.local.port) in ports_used
        ):
            kept.append(s)
            ids.add(id(s))
    order = {id(s): i for i, s in enumerate(snap.sockets)}
    kept.sort(key=lambda s: order[id(s)])
    return dataclasses.replace(snap, sockets=tuple(kept))
