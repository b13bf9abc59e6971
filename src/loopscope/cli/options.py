"""Options shared by the snapshot commands (scan, ports, map) and the snapshot they lead to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

from loopscope.analysis.filters import filter_snapshot
from loopscope.collect import Collector, snapshot_options
from loopscope.errors import UsageError
from loopscope.model import Snapshot

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
