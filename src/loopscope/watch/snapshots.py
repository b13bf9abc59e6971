"""Light periodic snapshots for watch, read through the one collector.

A full snapshot parses every TIME_WAIT row into a record (50k rows on a busy host take over a second in
Python). Watch needs listeners, established connections and their owners, plus *counts* of TIME_WAIT per
destination. So :class:`WatchSnapshots` configures the :class:`~loopscope.collect.Collector` with:

- full reads: TCP ``LISTEN | ESTABLISHED`` and ``TimeWait.COUNTS`` (TIME_WAIT messages are counted by
  destination from the raw sockid, no records), owners of every socket from a /proc fd scan limited to
  the processes of the namespace (``ProcOwnerScanner(netns_only=True)``, in a thread: no fork of a
  process that holds eBPF maps); the session runs them at an adaptive cadence (near 5% of a core);
- listener reads (accept queues) at every interval: TCP LISTEN, listener owners from the last full
  read's scan (no /proc walk).

The NETLINK_SOCK_DIAG socket is opened once in the namespace and kept (``KeptTransports``); addresses,
sysctls and process details are read once (``keep_facts``, ``keep_processes``).
"""

from __future__ import annotations

from dataclasses import dataclass

from loopscope.backends.linux.procfs import OwnerScan
from loopscope.backends.linux.sock_diag import NETLINK_SOCK_DIAG
from loopscope.collect import (
    Collector,
    KeptTransports,
    OwnerScope,
    ProcOwnerScanner,
    SockDiagSource,
    States,
    TimeWait,
)
from loopscope.collect.parts import NetnsTarget
from loopscope.model import Endpoint, Proto, Snapshot

__all__ = ["LightSnapshot", "WatchSnapshots"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LightSnapshot:
    """A snapshot restricted to listeners and established sockets, with TIME_WAIT counted by destination."""

    snapshot: Snapshot
    """Listeners and established TCP sockets with owners."""
    time_wait_by_dest: dict[Endpoint, int]
    """TIME_WAIT sockets per destination listener (client-side TIME_WAIT holding ephemeral ports)."""
    time_wait_other: int = 0
    """The other TIME_WAIT sockets (server side, remote destinations): counted only."""
    full: bool
    """False for a listener-only read (no established sockets, no TIME_WAIT counts)."""


class WatchSnapshots:
    """Light snapshots of one namespace; :meth:`close` releases the kept netlink socket.

    Args:
        target: the namespace (a resolved target).

    Raises:
        BackendUnavailable / NetnsError: the sock_diag socket cannot be opened there.
    """

    def __init__(self, target: NetnsTarget) -> None:
        self.target = target
        self._transports = KeptTransports()
        base = Collector(
            source=SockDiagSource(self._transports),
            owner_scanner=ProcOwnerScanner(fork=False, netns_only=True),
            protos=(Proto.TCP,),
            keep_facts=True,
            keep_processes=True,
        )
        self._full = base.configured(states=States.LISTENING_ESTABLISHED, time_wait=TimeWait.COUNTS)
        self._listeners = base.configured(states=States.LISTENING, owner_scope=OwnerScope.LISTENERS)
        self._owners: OwnerScan | None = None
        base.namespaces.run(
            target, lambda: self._transports(NETLINK_SOCK_DIAG)
        )  # open it there now

    def read(self, full: bool) -> LightSnapshot:
        """Listeners (always) and, when ``full``, established sockets with owners and TIME_WAIT counts.

        Raises:
            BackendUnavailable / NetlinkError: sock_diag is not usable.
        """
        spec = self.target
        if full or self._owners is None:
            run = self._full.read_all((spec,))
            self._owners = run.owner_scan
            reading = run.readings[0]
            full = True
        else:
            reading = self._listeners.read(spec, owners=self._owners)
        return LightSnapshot(
            snapshot=reading.snapshot,
            time_wait_by_dest=reading.time_wait_by_dest,
            time_wait_other=reading.time_wait_other,
            full=full,
        )

    def close(self) -> None:
        """Close the kept socket."""
        self._transports.close()
