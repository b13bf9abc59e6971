"""The one collector: every snapshot of loopscope is read here.

Built from a socket source (:mod:`loopscope.collect.sources`), an owner scanner and a ``ProcRoot``
(:mod:`loopscope.collect.parts`), all injectable the way httpcore takes a network backend; options say
which states to keep, whether TIME_WAIT comes back as rows or counts, and whose owners to attribute.
A run starts one /proc fd scan (a forked child, parallel with the dumps) for every namespace it reads.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from loopscope.backends.linux import procfs, rtnl
from loopscope.backends.linux._fastrec import field_setter
from loopscope.backends.linux.procfs import OwnerScan, ProcRoot
from loopscope.collect.parts import (
    KernelNamespaces,
    Namespaces,
    NetnsTarget,
    OwnerScanner,
    PendingOwners,
    ProcOwnerScanner,
)
from loopscope.collect.records import (
    Collection,
    NetnsSpec,
    OwnerScope,
    Reading,
    SkippedNetns,
    owner_gaps,
    split_time_wait,
    take_psutil,
)
from loopscope.collect.sources import (
    Connected,
    PsutilSource,
    Query,
    SocketSource,
    SourceRead,
    States,
    TimeWait,
    TransportOpener,
    choose_source,
    kernel_transports,
    read_time_wait_total,
)
from loopscope.errors import BackendUnavailable, NetlinkError, NetnsError
from loopscope.model import (
    Gap,
    InterfaceAddress,
    LinkInfo,
    NetnsId,
    ProcessInfo,
    ProcessKey,
    Proto,
    Snapshot,
    SocketRecord,
    StackFacts,
)

__all__ = ["Collector"]


@dataclass(slots=True, kw_only=True)
class _Facts:
    links: list[LinkInfo]
    addresses: list[InterfaceAddress]
    stack: StackFacts
    gaps: list[Gap]


@dataclass(slots=True, kw_only=True)
class _Raw:
    """What is read inside one namespace, before attribution."""

    read: SourceRead
    facts: _Facts
    time_wait_total: int | None = None
    """All TIME_WAIT sockets of the namespace (net/sockstat), with connected sockets counted."""


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


class Collector:
    """Reads snapshots of network namespaces through injectable parts.

    Args:
        source: the socket source (default: :func:`~loopscope.collect.sources.choose_source` ``"auto"``
            over ``transports``).
        owner_scanner: the fd scan (default: a forked /proc scan of ``proc_root``).
        proc_root: /proc for process details and sysctls (``/proc/sys/net`` follows the reading
            thread's namespace).
        transports: netlink transports for interfaces and addresses (NETLINK_ROUTE).
        namespaces: how namespaces are found and entered (default: setns(2)).
        protos: protocols to read.
        states: which sockets to keep.
        time_wait: TIME_WAIT as rows or counts.
        connected: connected TCP sockets as rows or counts (the exporter).
        owner_scope: whose owners to attribute.
        tcp_info: read struct tcp_info (sock_diag only).
        keep_facts: read links, addresses and sysctls once per namespace and keep them (``watch``).
        keep_processes: keep process details across reads (``watch``).
        clock_ns: wall clock for ``taken_at_ns``.

    Example::

        snap = Collector().snapshot()                       # this namespace, every socket
        ports = Collector(states=States.LISTENING, owner_scope=OwnerScope.LISTENERS)
        snaps = ports.snapshots(all_netns=True)             # one fd scan for all of them
    """

    def __init__(
        self,
        *,
        source: SocketSource | None = None,
        owner_scanner: OwnerScanner | None = None,
        proc_root: ProcRoot = ProcRoot(),
        transports: TransportOpener = kernel_transports,
        namespaces: Namespaces | None = None,
        protos: tuple[Proto, ...] = (Proto.TCP, Proto.UDP),
        states: States = States.ALL,
        time_wait: TimeWait = TimeWait.ROWS,
        connected: Connected = Connected.ROWS,
        owner_scope: OwnerScope = OwnerScope.ALL,
        tcp_info: bool = False,
        keep_facts: bool = False,
        keep_processes: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.source = source if source is not None else choose_source("auto", transports)
        self.owner_scanner = owner_scanner or ProcOwnerScanner(root=proc_root)
        self.proc_root = proc_root
        self.transports = transports
        self.namespaces: Namespaces = namespaces or KernelNamespaces()
        self.query = Query(
            protos=protos,
            states=states,
            time_wait=time_wait,
            connected=connected,
            tcp_info=tcp_info,
        )
        self.owner_scope = owner_scope
        self.keep_facts = keep_facts
        self.keep_processes = keep_processes
        self.clock_ns = clock_ns
        self._facts: dict[NetnsId, _Facts] = {}
        self._processes: dict[ProcessKey, ProcessInfo] = {}

    @classmethod
    def for_source(
        cls, name: str = "auto", *, transports: TransportOpener = kernel_transports, **options: Any
    ) -> Collector:
        """A collector on the named source (``auto``, ``sock_diag``, ``procfs``, ``psutil``).

        Raises:
            UsageError: unknown source name.
        """
        return cls(source=choose_source(name, transports), transports=transports, **options)

    def configured(self, **options: Any) -> Collector:
        """A collector on the same parts and caches with other options (``states``, ``time_wait``,
        ``owner_scope``, ``protos``, ``tcp_info``)."""
        other = Collector(
            source=self.source,
            owner_scanner=self.owner_scanner,
            proc_root=self.proc_root,
            transports=self.transports,
            namespaces=self.namespaces,
            protos=options.pop("protos", self.query.protos),
            states=options.pop("states", self.query.states),
            time_wait=options.pop("time_wait", self.query.time_wait),
            connected=options.pop("connected", self.query.connected),
            tcp_info=options.pop("tcp_info", self.query.tcp_info),
            owner_scope=options.pop("owner_scope", self.owner_scope),
            keep_facts=self.keep_facts,
            keep_processes=self.keep_processes,
            clock_ns=self.clock_ns,
        )
        if options:
            raise TypeError(f"unknown options {sorted(options)}")
        other._facts, other._processes = self._facts, self._processes
        return other

    def snapshot(self, netns: NetnsSpec = None) -> Snapshot:
        """One namespace (None: this one; a /run/netns name, a pid, an nsfs path or a resolved
        target).

        Raises:
            UsageError: unknown namespace.
            NetnsError: the namespace cannot be entered.
            BackendUnavailable: the forced source cannot work here.
        """
        return self.read(netns).snapshot

    def snapshots(
        self,
        netns: Iterable[NetnsSpec] = (None,),
        *,
        all_netns: bool = False,
        owners: OwnerScan | None = None,
    ) -> list[Snapshot]:
        """Several namespaces sharing one fd scan; ``all_netns`` reads every distinct one instead of
        ``netns`` and puts a gap for each namespace it could not enter on the first snapshot;
        ``owners`` is a scan made earlier (``ports --json`` forks one before its imports) instead of
        one started here.

        Raises:
            UsageError, NetnsError, BackendUnavailable: as :meth:`snapshot` (NetnsError only for
            namespaces asked by name).
        """
        run = self.read_all(netns, all_netns=all_netns, owners=owners)
        snaps = run.snapshots
        if run.skipped and snaps:
            snaps[0] = replace(snaps[0], gaps=snaps[0].gaps + tuple(s.gap() for s in run.skipped))
        return snaps

    def read(self, netns: NetnsSpec = None, *, owners: OwnerScan | None = None) -> Reading:
        """One namespace with its TIME_WAIT counts; ``owners`` reuses an earlier fd scan instead of
        scanning. Raises as :meth:`snapshot`."""
        return self.read_all((netns,), owners=owners).readings[0]

    def read_all(
        self,
        netns: Iterable[NetnsSpec] = (None,),
        *,
        all_netns: bool = False,
        owners: OwnerScan | None = None,
    ) -> Collection:
        """The run behind every other method: resolve, start the fd scan, read each namespace in it
        (beside the scan), attribute, read process details. Raises as :meth:`snapshots`."""
        if isinstance(self.source, PsutilSource):
            snap = take_psutil(self.clock_ns)
            target = NetnsTarget(path="", label=snap.netns_label, id=snap.netns)
            return Collection(readings=(Reading(target=target, snapshot=snap),))
        with _gc_paused():
            return self._run(netns, all_netns, owners)

    def _run(
        self, specs: Iterable[NetnsSpec], all_netns: bool, owners: OwnerScan | None
    ) -> Collection:
        started_ns = self.clock_ns()
        t0 = time.perf_counter_ns()
        ns = self.namespaces
        targets = (
            ns.list(None)
            if all_netns
            else [s if isinstance(s, NetnsTarget) else ns.resolve(s) for s in specs]
        )
        pending: PendingOwners | None = None
        if owners is None and self.owner_scope is not OwnerScope.NONE:
            pending = self.owner_scanner.start(None if all_netns else {t.id for t in targets})
        raws: list[tuple[NetnsTarget, _Raw]] = []
        skipped: list[SkippedNetns] = []
        self._read_targets(targets, raws, skipped, all_netns)
        scan = owners if pending is None else pending.result()
        if all_netns and scan is not None:  # namespaces seen only through a process (containers)
            targets = ns.list(scan.pid_netns)
            self._read_targets(targets, raws, skipped, all_netns)
            order = {t.id: i for i, t in enumerate(targets)}
            raws.sort(key=lambda tr: order.get(tr[0].id, len(order)))
        if self.owner_scope is OwnerScope.NONE:
            processes: dict[ProcessKey, ProcessInfo] = {}
            owned: list[dict[ProcessKey, None]] = [{} for _ in raws]  # nothing to keep
            gaps = [Gap(what="process owners", reason="not asked (--no-processes)")]
        else:
            assert scan is not None
            unowned, owned = self._attach_owners([raw for _, raw in raws], scan)
            processes, missing = self._processes_for(owned)
            gaps = owner_gaps(scan, missing + scan.vanished_pids, unowned)
        duration_ns = time.perf_counter_ns() - t0
        readings = tuple(
            self._reading(t, raw, processes, keys, gaps, started_ns, duration_ns)
            for (t, raw), keys in zip(raws, owned, strict=True)
        )
        return Collection(readings=readings, skipped=tuple(skipped), owner_scan=scan)

    def _read_targets(
        self,
        targets: Sequence[NetnsTarget],
        raws: list[tuple[NetnsTarget, _Raw]],
        skipped: list[SkippedNetns],
        all_netns: bool,
    ) -> None:
        done = {t.id for t, _ in raws} | {s.target.id for s in skipped} if all_netns else set()
        for target in targets:
            if target.id in done:
                continue
            try:
                raws.append((target, self.namespaces.run(target, partial(self._inside, target))))
            except NetnsError as exc:
                if not all_netns:
                    raise
                skipped.append(SkippedNetns(target=target, reason=str(exc)))

    def _inside(self, target: NetnsTarget) -> _Raw:
        """Runs in the target namespace: sockets, then (once with ``keep_facts``) links, addresses,
        sysctls; with connected sockets counted, the facts first (the ephemeral range filters the
        dump) and the TIME_WAIT total from net/sockstat."""
        if self.query.connected is Connected.COUNTS:
            facts = self._facts_of(target)
            span = facts.stack.ip_local_port_range or self.query.ephemeral_range
            read = self.source.read(target.id, replace(self.query, ephemeral_range=span))
            sockstat = ProcRoot(self.proc_root.join("thread-self"))  # this thread's namespace
            return _Raw(read=read, facts=facts, time_wait_total=read_time_wait_total(sockstat))
        read = self.source.read(target.id, self.query)
        return _Raw(read=read, facts=self._facts_of(target))

    def _facts_of(self, target: NetnsTarget) -> _Facts:
        facts = self._facts.get(target.id) if self.keep_facts else None
        if facts is None:
            facts = self._read_facts()
            if self.keep_facts:
                self._facts[target.id] = facts
        return facts

    def _read_facts(self) -> _Facts:
        gaps: list[Gap] = []
        try:
            with self.transports(rtnl.NETLINK_ROUTE) as transport:
                links = rtnl.dump_links(transport)
                addresses = rtnl.dump_addresses(transport, {lk.index: lk.name for lk in links})
        except (BackendUnavailable, NetlinkError) as exc:
            links, addresses = [], []
            gaps.append(Gap(what="interfaces and addresses", reason=str(exc)))
        stack = procfs.read_stack_facts(self.proc_root)
        return _Facts(links=links, addresses=addresses, stack=stack, gaps=gaps)

    def _attach_owners(
        self, raws: Sequence[_Raw], scan: OwnerScan
    ) -> tuple[int, list[dict[ProcessKey, None]]]:
        """Fill ``owners`` of freshly read records (not yet visible outside the collector), in the
        same pass as what the snapshot needs of them (one walk over 100k sockets, not three).

        Returns:
            (in-scope sockets with an inode and no owner, per raw the owner keys of its sockets in
            first-seen order).
        """
        set_owners = field_setter(SocketRecord, "owners")
        get = scan.owners.get
        listeners_only = self.owner_scope is OwnerScope.LISTENERS
        unowned = 0
        owned_per_raw: list[dict[ProcessKey, None]] = []
        for raw in raws:
            owned: dict[ProcessKey, None] = {}
            last: tuple[ProcessKey, ...] = ()
            for sock in raw.read.sockets:
                if listeners_only and not sock.is_listener:
                    keys = sock.owners
                else:
                    found = get(sock.inode)  # type: ignore[arg-type]  # None (no inode): not a key
                    if found:
                        set_owners(sock, found)
                        keys = found
                    else:
                        keys = sock.owners
                        if not keys:
                            unowned += sock.inode is not None
                            continue
                if keys == last:  # runs of sockets of one process: compare, skip the lookups
                    continue
                last = keys
                for key in keys:
                    if key not in owned:
                        owned[key] = None
            owned_per_raw.append(owned)
        return unowned, owned_per_raw

    def _processes_for(
        self, owned_per_raw: Sequence[dict[ProcessKey, None]]
    ) -> tuple[dict[ProcessKey, ProcessInfo], int]:
        known = self._processes if self.keep_processes else {}
        processes: dict[ProcessKey, ProcessInfo] = {}
        missing: set[ProcessKey] = set()
        for owned in owned_per_raw:
            for key in owned:
                if key in processes or key in missing:
                    continue
                info = known.get(key) or procfs.read_process(key, self.proc_root)
                if info is None:
                    missing.add(key)
                else:
                    processes[key] = known[key] = info
        return processes, len(missing)

    def _reading(
        self,
        target: NetnsTarget,
        raw: _Raw,
        processes: dict[ProcessKey, ProcessInfo],
        owned: dict[ProcessKey, None],
        gaps: list[Gap],
        started_ns: int,
        duration_ns: int,
    ) -> Reading:
        sockets = raw.read.sockets
        snap = Snapshot(
            taken_at_ns=started_ns,
            netns=target.id,
            netns_label=target.label,
            source=raw.read.source,
            sockets=tuple(sockets),
            processes={k: v for k, v in processes.items() if k in owned},
            addresses=tuple(raw.facts.addresses),
            links=tuple(raw.facts.links),
            stack=raw.facts.stack,
            gaps=tuple(raw.read.gaps + raw.facts.gaps + gaps),
            duration_ns=duration_ns,
        )
        read = raw.read
        if not read.time_wait and not read.connected and not raw.time_wait_total:
            return Reading(target=target, snapshot=snap)
        by_dest, other = split_time_wait(read.time_wait, sockets)
        if raw.time_wait_total is not None:  # the dump left out server-side TIME_WAIT
            other = max(0, raw.time_wait_total - sum(by_dest.values()))
        conn_by_dest, conn_other = split_time_wait(read.connected, sockets)
        return Reading(
            target=target,
            snapshot=snap,
            time_wait_by_dest=by_dest,
            time_wait_other=other,
            connected_by_dest=conn_by_dest,
            connected_other=conn_other,
            connected_ports=frozenset(read.connected_ports),
        )
