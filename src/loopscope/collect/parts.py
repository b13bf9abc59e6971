"""The collector's other injectable parts: the owner scanner and the namespaces it reads.

Kernel versions read /proc and setns(2); the fixed ones serve recorded fixtures (one namespace, no
threads), so the whole collector runs in a unit test.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from loopscope.backends.linux.fdscan import start_owner_scan
from loopscope.backends.linux.netns import NetnsTarget
from loopscope.backends.linux.procfs import OwnerScan, ProcRoot
from loopscope.model import NetnsId

__all__ = [
    "FixedNamespace",
    "KernelNamespaces",
    "Namespaces",
    "NetnsTarget",
    "OwnerScanner",
    "PendingOwners",
    "ProcOwnerScanner",
]

T = TypeVar("T")
_PROC = ProcRoot()


class PendingOwners(Protocol):
    """A started owner scan."""

    def result(self) -> OwnerScan:
        """Wait for the scan and return it.

        Raises:
            ParseError: /proc cannot be listed.
        """
        ...


class OwnerScanner(Protocol):
    """Maps socket inodes to the processes holding them (the /proc fd scan)."""

    def start(self, netns: Collection[NetnsId] | None) -> PendingOwners:
        """Start a scan that runs beside the socket dumps; returns at once.

        Args:
            netns: read only processes of these namespaces; None reads every process.
        """
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcOwnerScanner:
    """The /proc/*/fd scan (:mod:`~loopscope.backends.linux.fdscan`)."""

    root: ProcRoot = _PROC
    """Where /proc is."""
    fork: bool = True
    """Scan in a forked child, in parallel with the netlink dumps on another core (a thread
    otherwise)."""
    netns_only: bool = False
    """Read only the fd tables of processes in the namespaces being read (one stat each first): much
    cheaper on hosts with many containers; a socket passed to a process of another namespace is
    missed."""

    def start(self, netns: Collection[NetnsId] | None) -> PendingOwners:
        """Start the scan (see :class:`OwnerScanner`)."""
        return start_owner_scan(self.root, netns=netns if self.netns_only else None, fork=self.fork)


class Namespaces(Protocol):
    """Finds network namespaces and runs code inside one."""

    def resolve(self, spec: str | None) -> NetnsTarget:
        """``None`` (this one), a /run/netns name, a pid or an nsfs path -> a target.

        Raises:
            UsageError: no such namespace.
        """
        ...

    def list(self, pid_netns: Mapping[NetnsId, int] | None) -> list[NetnsTarget]:
        """Every distinct namespace: this one first, named ones, then those seen through a process."""
        ...

    def run(self, target: NetnsTarget, fn: Callable[[], T]) -> T:
        """``fn()`` inside ``target``.

        Raises:
            NetnsError: the namespace cannot be entered.
        """
        ...


class KernelNamespaces:
    """setns(2) into /proc/PID/ns/net or /run/netns/NAME (:mod:`~loopscope.backends.linux.netns`)."""

    def resolve(self, spec: str | None) -> NetnsTarget:
        """See :class:`Namespaces`."""
        from loopscope.backends.linux.netns import resolve_netns

        return resolve_netns(spec)

    def list(self, pid_netns: Mapping[NetnsId, int] | None) -> list[NetnsTarget]:
        """See :class:`Namespaces`."""
        from loopscope.backends.linux.netns import list_netns

        return list_netns(dict(pid_netns) if pid_netns is not None else None)

    def run(self, target: NetnsTarget, fn: Callable[[], T]) -> T:
        """See :class:`Namespaces`."""
        from loopscope.backends.linux.netns import run_in_netns

        return run_in_netns(target, fn)


@dataclass(frozen=True, slots=True)
class FixedNamespace:
    """One namespace that is already where the reads go (a recording): no setns, no thread."""

    target: NetnsTarget
    """The namespace every spec resolves to."""

    def resolve(self, spec: str | None) -> NetnsTarget:
        """The one target, for any spec."""
        return self.target

    def list(self, pid_netns: Mapping[NetnsId, int] | None) -> list[NetnsTarget]:
        """The one target."""
        return [self.target]

    def run(self, target: NetnsTarget, fn: Callable[[], T]) -> T:
        """``fn()`` here."""
        return fn()
