"""Options shared by the snapshot commands (scan, ports, map) and the snapshot they lead to."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

from loopscope.collect import Collector, snapshot_options
from loopscope.errors import UsageError
from loopscope.model import Snapshot, SocketRecord

if TYPE_CHECKING:
    from loopscope.analysis.listeners import Listener

__all__ = [
    "AllNetnsOption",
    "NetnsOption",
    "NoProcessesOption",
    "PidsOption",
    "PortsOption",
    "SourceOption",
    "filter_snapshot",
    "read_snapshots",
    "select_by_port_pid",
]

NetnsOption = typer.Option(
    None, "--netns", help="Read another network namespace: NAME (/run/netns), PID or path."
)
AllNetnsOption = typer.Option(False, "--all-netns", help="Read every distinct network namespace.")
SourceOption = typer.Option(
    "auto", "--source", help="Socket source: auto, sock_diag, procfs, psutil."
)
NoProcessesOption = typer.Option(
    False, "--no-processes", help="Skip the /proc fd scan (faster; no process owners)."
)
PortsOption = typer.Option([], "--port", help="Only this port (repeatable: any of them).")
PidsOption = typer.Option(
    [], "--pid", help="Only what this process owns or talks to (repeatable: any of them)."
)


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


def select_by_port_pid(
    rows: list[Listener], ports: Sequence[int], pids: Sequence[int]
) -> list[Listener]:
    """Listeners on one of ``ports`` and owned by one of ``pids`` (each filter when given).

    Raises:
        UsageError: nothing listens on those ports, or those processes own no listener.
    """
    out = rows
    if ports:
        out = [r for r in out if r.local.port in ports]
        if not out:
            raise UsageError(f"nothing listens on port {', '.join(map(str, ports))}")
    if pids:
        out = [r for r in out if any(p.pid in pids for p in r.owners)]
        if not out:
            raise UsageError(
                f"process {', '.join(map(str, pids))} owns no listener "
                "(or it does not exist, or is not readable)"
            )
    return out


def read_snapshots(
    netns: str | None,
    all_netns: bool,
    source: str,
    no_processes: bool,
    *,
    tcp_info: bool = False,
    listening_only: bool = False,
    ports: Sequence[int] = (),
    pids: Sequence[int] = (),
) -> list[Snapshot]:
    """Snapshots for the command's namespace options, filtered by ``--port``/``--pid``
    (:func:`filter_snapshot`).

    Raises:
        UsageError: --netns and --all-netns together, or an unknown namespace.
    """
    if netns is not None and all_netns:
        raise UsageError("use --netns or --all-netns, not both")
    collector = Collector.for_source(
        source,
        **snapshot_options(
            attribute=not no_processes, listening_only=listening_only, tcp_info=tcp_info
        ),
    )
    snaps = collector.snapshots((netns,), all_netns=all_netns)
    return [filter_snapshot(s, ports, pids) for s in snaps]
