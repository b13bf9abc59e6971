"""The one orchestrator: picks the socket source, reads namespaces, attributes sockets to processes,
and records what it could not see.

Source choice (in this one place):
1. Linux: ``sock_diag`` (netlink; every field, ~1.6 ms per 1k sockets).
2. Linux without NETLINK_SOCK_DIAG: ``procfs`` (/proc/net/{tcp,udp}{,6}; no backlog, cookie, tcp_info,
   IPV6_V6ONLY).
3. Other systems: ``psutil`` (no queues, one namespace).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from loopscope.errors import BackendUnavailable, LoopscopeError, NetlinkError, UsageError
from loopscope.model import (
    Gap,
    InterfaceAddress,
    LinkInfo,
    ProcessInfo,
    ProcessKey,
    Proto,
    Snapshot,
    SocketRecord,
    StackFacts,
)

__all__ = ["SOURCES", "take_all_snapshots", "take_snapshot", "take_snapshots"]

SOURCES = ("auto", "sock_diag", "procfs", "psutil")


@dataclass(slots=True)
class _Raw:
    """What is read inside one namespace, before attribution."""

    sockets: list[SocketRecord]
    links: list[LinkInfo]
    addresses: list[InterfaceAddress]
    stack: StackFacts
    source: str
    gaps: list[Gap]


def _read_inside(
    source: str,
    protos: tuple[Proto, ...],
    tcp_info: bool,
    owners: Mapping[int, tuple[ProcessKey, ...]] | None,
    listening_only: bool = False,
) -> _Raw:
    """Runs in the target namespace's thread: sockets (owners filled from the fd scan), links,
    addresses, sysctls."""
    from loopscope.backends.linux import procfs, rtnl, sock_diag
    from loopscope.backends.linux.netns import netns_id_of

    netns = netns_id_of("/proc/thread-self/ns/net")
    gaps: list[Gap] = []
    sockets: list[SocketRecord] | None = None
    used = source
    if source in ("auto", "sock_diag"):
        try:
            sockets = sock_diag.read_sockets(
                netns=netns,
                protos=protos,
                tcp_info=tcp_info,
                owners=owners,
                listening_only=listening_only,
            )
            used = "sock_diag"
        except (BackendUnavailable, NetlinkError) as exc:
            if source == "sock_diag":
                raise
            gaps.append(
                Gap(
                    what="sock_diag",
                    reason=f"{exc}; fell back to /proc/net (no backlog, cookie, tcp_info)",
                )
            )
    if sockets is None:
        sockets = procfs.read_proc_net(
            netns=netns, root=procfs.ProcRoot("/proc/thread-self"), protos=protos
        )
        if listening_only:
            sockets = [s for s in sockets if s.is_listener]
        used = "procfs"
        gaps.append(
            Gap(
                what="backlog, socket cookie, tcp_info, IPV6_V6ONLY",
                reason="/proc/net tables do not carry them (source procfs)",
            )
        )
    try:
        links, addresses = rtnl.read_addresses()
    except (BackendUnavailable, NetlinkError) as exc:
        links, addresses = [], []
        gaps.append(Gap(what="interfaces and addresses", reason=str(exc)))
    stack = procfs.read_stack_facts(procfs.ProcRoot("/proc"))
    return _Raw(
        sockets=sockets, links=links, addresses=addresses, stack=stack, source=used, gaps=gaps
    )


def _attach_owners(raws: Sequence[_Raw], owners: Mapping[int, tuple[ProcessKey, ...]]) -> None:
    """Fill ``owners`` of freshly read records (not yet visible outside this module)."""
    from loopscope.backends.linux._fastrec import field_setter

    set_owners = field_setter(SocketRecord, "owners")
    get = owners.get
    for raw in raws:
        for sock in raw.sockets:
            keys = get(sock.inode)  # type: ignore[arg-type]  # None (no inode) is simply not a key
            if keys:
                set_owners(sock, keys)


def _owner_gaps(scan: object, vanished: int, unowned: int) -> list[Gap]:
    gaps: list[Gap] = []
    denied = getattr(scan, "denied_pids", 0)
    if denied:
        gaps.append(
            Gap(
                what=f"fd tables of {denied} processes",
                reason="permission denied on /proc/PID/fd: run as root for the full view",
                count=denied,
            )
        )
    if vanished:
        gaps.append(
            Gap(what=f"{vanished} processes", reason="exited during the scan", count=vanished)
        )
    if unowned:
        gaps.append(
            Gap(
                what=f"owner of {unowned} sockets",
                reason="no readable process holds them (other users' processes need root, "
                "processes in another pid namespace, or closed mid-scan)",
                count=unowned,
            )
        )
    return gaps


def _processes_for(
    raws: Sequence[tuple[object, _Raw]],
) -> tuple[dict[ProcessKey, ProcessInfo], int]:
    from loopscope.backends.linux import procfs

    processes: dict[ProcessKey, ProcessInfo] = {}
    missing: set[ProcessKey] = set()
    for _, raw in raws:
        for sock in raw.sockets:
            for key in sock.owners:
                if key in processes or key in missing:
                    continue
                info = procfs.read_process(key)
                if info is None:
                    missing.add(key)
                else:
                    processes[key] = info
    return processes, len(missing)


def _snapshot(
    target: object,
    raw: _Raw,
    processes: dict[ProcessKey, ProcessInfo],
    gaps: list[Gap],
    started_ns: int,
    duration_ns: int,
) -> Snapshot:
    from loopscope.backends.linux.netns import NetnsTarget

    assert isinstance(target, NetnsTarget)
    owned = {k for s in raw.sockets for k in s.owners}
    return Snapshot(
        taken_at_ns=started_ns,
        netns=target.id,
        netns_label=target.label,
        source=raw.source,
        sockets=tuple(raw.sockets),
        processes={k: v for k, v in processes.items() if k in owned},
        addresses=tuple(raw.addresses),
        links=tuple(raw.links),
        stack=raw.stack,
        gaps=tuple(raw.gaps + gaps),
        duration_ns=duration_ns,
    )


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise UsageError(f"unknown source {source!r}: use one of {', '.join(SOURCES)}")


def take_snapshots(
    netns: Iterable[str | None] = (None,),
    *,
    tcp_info: bool = False,
    attribute: bool = True,
    source: str = "auto",
    protos: tuple[Proto, ...] = (Proto.TCP, Proto.UDP),
    listening_only: bool = False,
) -> list[Snapshot]:
    """Snapshots of several namespaces sharing one /proc fd scan.

    Args:
        netns: namespace specs: None (this one), a /run/netns name, a pid, or an nsfs path.
        tcp_info: read struct tcp_info for TCP sockets (sock_diag only).
        attribute: map sockets to processes (the /proc fd scan: the expensive part).
        source: ``auto``, ``sock_diag``, ``procfs`` or ``psutil``.
        protos: which protocols to read.
        listening_only: read only listeners (TCP LISTEN, bound unconnected UDP): what ``ports`` needs;
            the snapshot then holds no connections.

    Raises:
        UsageError: unknown namespace or source.
        NetnsError: a namespace cannot be entered.
        BackendUnavailable: the forced source cannot work here.
    """
    _check_source(source)
    if source == "psutil" or not sys.platform.startswith("linux"):
        return [_take_psutil()]
    with _gc_paused():
        return _take_snapshots(
            netns,
            tcp_info=tcp_info,
            attribute=attribute,
            source=source,
            protos=protos,
            listening_only=listening_only,
        )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while 100k+ acyclic records are allocated (it otherwise runs
    repeatedly over the growing heap: 0.1-0.4 s of a 1.1 s snapshot at 100k sockets); restore after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _take_snapshots(
    netns: Iterable[str | None],
    *,
    tcp_info: bool,
    attribute: bool,
    source: str,
    protos: tuple[Proto, ...],
    listening_only: bool,
) -> list[Snapshot]:
    from loopscope.backends.linux.netns import resolve_netns, run_in_netns

    started_ns = time.time_ns()
    t0 = time.perf_counter_ns()
    targets = [resolve_netns(spec) for spec in netns]
    from loopscope.backends.linux.fdscan import start_owner_scan

    pending = start_owner_scan() if attribute else None  # a forked child: runs beside the dumps
    raws = [
        (t, run_in_netns(t, lambda: _read_inside(source, protos, tcp_info, None, listening_only)))
        for t in targets
    ]
    scan = None
    if pending is not None:
        scan = pending.result()
        _attach_owners([raw for _, raw in raws], scan.owners)
    if attribute:
        processes, vanished = _processes_for(raws)
        unowned = sum(
            1 for _, raw in raws for s in raw.sockets if s.inode is not None and not s.owners
        )
        gaps = _owner_gaps(scan, vanished + (scan.vanished_pids if scan else 0), unowned)
    else:
        processes, gaps = {}, [Gap(what="process owners", reason="not asked (--no-processes)")]
    duration_ns = time.perf_counter_ns() - t0
    return [_snapshot(t, raw, processes, gaps, started_ns, duration_ns) for t, raw in raws]


def take_snapshot(
    netns: str | None = None,
    *,
    tcp_info: bool = False,
    attribute: bool = True,
    source: str = "auto",
    protos: tuple[Proto, ...] = (Proto.TCP, Proto.UDP),
    listening_only: bool = False,
) -> Snapshot:
    """One namespace's sockets with owners, links, addresses and sysctls. See :func:`take_snapshots`."""
    return take_snapshots(
        (netns,),
        tcp_info=tcp_info,
        attribute=attribute,
        source=source,
        protos=protos,
        listening_only=listening_only,
    )[0]


def take_all_snapshots(
    *,
    tcp_info: bool = False,
    attribute: bool = True,
    source: str = "auto",
    listening_only: bool = False,
) -> list[Snapshot]:
    """Every distinct network namespace: this one, /run/netns names, and those seen only through a
    process (containers). A namespace that cannot be entered is left out with a gap on the first
    snapshot.
    """
    _check_source(source)
    if source == "psutil" or not sys.platform.startswith("linux"):
        return [_take_psutil()]
    from loopscope.backends.linux import procfs
    from loopscope.backends.linux.netns import list_netns

    scan = procfs.scan_socket_owners(want=set())  # only to learn each process's namespace
    snapshots: list[Snapshot] = []
    skipped: list[Gap] = []
    specs: list[str | None] = []
    for target in list_netns(scan.pid_netns):
        specs.append(None if target.label == "host" else target.path)
    good: list[str | None] = []
    for spec in specs:
        try:
            from loopscope.backends.linux.netns import resolve_netns, run_in_netns

            run_in_netns(resolve_netns(spec), lambda: None)
            good.append(spec)
        except LoopscopeError as exc:
            skipped.append(Gap(what=f"netns {spec}", reason=str(exc)))
    snapshots = take_snapshots(
        good, tcp_info=tcp_info, attribute=attribute, source=source, listening_only=listening_only
    )
    if skipped and snapshots:
        snapshots[0] = replace(snapshots[0], gaps=snapshots[0].gaps + tuple(skipped))
    return snapshots


def _take_psutil() -> Snapshot:
    from loopscope.backends.portable.psutil_backend import (
        CANNOT_SEE,
        read_psutil,
        read_psutil_interfaces,
    )
    from loopscope.model import NetnsId

    started_ns = time.time_ns()
    t0 = time.perf_counter_ns()
    netns = NetnsId(0, 0)
    sockets, processes, denied = read_psutil(netns)
    links, addresses = read_psutil_interfaces()
    gaps = list(CANNOT_SEE)
    if denied:
        gaps.append(Gap(what=f"{denied} processes", reason="not readable or exited", count=denied))
    return Snapshot(
        taken_at_ns=started_ns,
        netns=netns,
        netns_label="host",
        source="psutil",
        sockets=tuple(sockets),
        processes=processes,
        addresses=tuple(addresses),
        links=tuple(links),
        gaps=tuple(gaps),
        duration_ns=time.perf_counter_ns() - t0,
    )
