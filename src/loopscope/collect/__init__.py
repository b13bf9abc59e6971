"""Collect: the one place snapshots are read (see :class:`~loopscope.collect.collector.Collector`).

Every feature and front-end reads snapshots through a :class:`Collector`, built from a socket source,
an owner scanner and a ``ProcRoot`` (all injectable); the source is chosen in
:func:`~loopscope.collect.sources.choose_source`. ``take_snapshot``, ``take_snapshots`` and
``take_all_snapshots`` are one-line shorthands kept for scripts and benchmarks.
"""

from __future__ import annotations

from typing import Any

from loopscope.collect.collector import Collector
from loopscope.collect.parts import FixedNamespace, KernelNamespaces, ProcOwnerScanner
from loopscope.collect.records import Collection, OwnerScope, Reading, SkippedNetns
from loopscope.collect.sources import (
    SOURCES,
    Connected,
    FallbackSource,
    KeptTransports,
    ProcfsSource,
    PsutilSource,
    ReplayTransports,
    SockDiagSource,
    States,
    TimeWait,
    choose_source,
    kernel_transports,
)
from loopscope.model import Proto, Snapshot

__all__ = [
    "SOURCES",
    "Collection",
    "Collector",
    "Connected",
    "FallbackSource",
    "FixedNamespace",
    "KeptTransports",
    "KernelNamespaces",
    "OwnerScope",
    "ProcOwnerScanner",
    "ProcfsSource",
    "PsutilSource",
    "Reading",
    "ReplayTransports",
    "SkippedNetns",
    "SockDiagSource",
    "States",
    "TimeWait",
    "choose_source",
    "kernel_transports",
    "snapshot_options",
    "take_all_snapshots",
    "take_snapshot",
    "take_snapshots",
]

_ALL = (Proto.TCP, Proto.UDP)


def snapshot_options(
    *, attribute: bool = True, listening_only: bool = False, tcp_info: bool = False
) -> dict[str, Any]:
    """Collector options for the command-line flags (``--no-processes``, listeners only,
    ``tcp_info``).

    Listeners only: the /proc fd scan runs in a thread, not a forked child. The fork pays off when
    the scan runs beside a large dump; beside the listeners' (a few sockets, filtered in the kernel)
    it buys nothing and costs the fork, copy-on-write faults and the result's encoding (~7 ms of
    ``ports --json`` at 1k connections). Same result. (``ports --json`` on the fast path forks its
    scan before its imports instead, when the process is still small, and passes it in: see
    :mod:`loopscope.cli.fastpath`.)
    """
    options: dict[str, Any] = {
        "owner_scope": OwnerScope.ALL if attribute else OwnerScope.NONE,
        "states": States.LISTENING if listening_only else States.ALL,
        "tcp_info": tcp_info,
    }
    if listening_only and attribute:
        options["owner_scanner"] = ProcOwnerScanner(fork=False)
    return options


def take_snapshot(
    netns: str | None = None,
    *,
    tcp_info: bool = False,
    attribute: bool = True,
    source: str = "auto",
    protos: tuple[Proto, ...] = _ALL,
    listening_only: bool = False,
) -> Snapshot:
    """``Collector.for_source(source, ...).snapshot(netns)``."""
    return Collector.for_source(
        source,
        protos=protos,
        **snapshot_options(attribute=attribute, listening_only=listening_only, tcp_info=tcp_info),
    ).snapshot(netns)


def take_snapshots(
    netns: tuple[str | None, ...] | list[str | None] = (None,),
    *,
    tcp_info: bool = False,
    attribute: bool = True,
    source: str = "auto",
    protos: tuple[Proto, ...] = _ALL,
    listening_only: bool = False,
) -> list[Snapshot]:
    """``Collector.for_source(source, ...).snapshots(netns)``."""
    return Collector.for_source(
        source,
        protos=protos,
        **snapshot_options(attribute=attribute, listening_only=listening_only, tcp_info=tcp_info),
    ).snapshots(netns)


def take_all_snapshots(
    *,
    tcp_info: bool = False,
    attribute: bool = True,
    source: str = "auto",
    listening_only: bool = False,
) -> list[Snapshot]:
    """``Collector.for_source(source, ...).snapshots(all_netns=True)``."""
    return Collector.for_source(
        source,
        **snapshot_options(attribute=attribute, listening_only=listening_only, tcp_info=tcp_info),
    ).snapshots(all_netns=True)
