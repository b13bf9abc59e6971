"""Options shared by the snapshot commands (scan, ports, map) and the snapshot they lead to."""

from __future__ import annotations

import typer

from loopscope.collect import Collector, snapshot_options
from loopscope.errors import UsageError
from loopscope.model import Snapshot

__all__ = ["AllNetnsOption", "NetnsOption", "NoProcessesOption", "SourceOption", "read_snapshots"]

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


def read_snapshots(
    netns: str | None,
    all_netns: bool,
    source: str,
    no_processes: bool,
    *,
    tcp_info: bool = False,
    listening_only: bool = False,
) -> list[Snapshot]:
    """Snapshots for the command's namespace options.

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
    return collector.snapshots((netns,), all_netns=all_netns)
