"""The collector on the recorded host1 fixture (sock_diag + rtnl replayed, proc/ as the ProcRoot), its
options, its sources, and the one fd scan per run."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Collection
from pathlib import Path

import pytest

from loopscope.backends.linux import sock_diag
from loopscope.backends.linux.procfs import ProcRoot
from loopscope.collect import (
    Collector,
    FallbackSource,
    OwnerScope,
    ProcfsSource,
    ProcOwnerScanner,
    PsutilSource,
    ReplayTransports,
    SockDiagSource,
    States,
    TimeWait,
    choose_source,
    snapshot_options,
    take_snapshot,
)
from loopscope.collect.parts import PendingOwners
from loopscope.errors import NetnsError, UsageError
from loopscope.model import Endpoint, NetnsId, ProcessKey, Proto, Snapshot, TcpState
from loopscope.testing.factories import NS, recorded_collector
from loopscope.testing.record import load_transport

HOST1 = Path(__file__).parents[1] / "fixtures" / "host1"


class CountingScanner:
    """An owner scanner that counts its scans (and reads the fixture or the real /proc)."""

    def __init__(self, root: ProcRoot = ProcRoot()) -> None:
        self.inner = ProcOwnerScanner(root=root, fork=False)
        self.starts: list[Collection[NetnsId] | None] = []

    def start(self, netns: Collection[NetnsId] | None) -> PendingOwners:
        self.starts.append(netns)
        return self.inner.start(netns)


def _recorded(**options: object) -> Collector:
    return recorded_collector(HOST1, **options)


def test_recording_gives_the_recorded_sockets_owners_and_gaps(host1_expected):
    snap = _recorded().snapshot()
    recorded = list(
        sock_diag.dump_sockets(load_transport(HOST1 / "sock_diag.json"), netns=NS, tcp_info=True)
    )
    assert [s.key for s in snap.sockets] == [s.key for s in recorded]
    assert snap.source == "sock_diag" and snap.netns == NS and snap.netns_label == "host"
    pid = host1_expected["pid"]
    owner = {s.local.port: s.owners for s in snap.sockets if s.is_listener}
    for name in ("listen_127", "listen_v6_loop", "listen_any4", "listen_any6_dual", "udp"):
        assert [k.pid for k in owner[host1_expected[name]]] == [pid], name
    (key,) = {k for s in snap.sockets for k in s.owners}
    assert snap.processes[key].comm.startswith("python")
    # one socket has an inode but no recorded owner (a listener of another process): one gap
    unowned = [s for s in snap.sockets if s.inode is not None and not s.owners]
    assert len(unowned) == 1
    assert [(g.what, g.count) for g in snap.gaps] == [("owner of 1 socket", 1)]
    # TIME_WAIT rows carry no inode and no owner
    assert all(not s.owners for s in snap.sockets if s.state is TcpState.TIME_WAIT)
    assert snap.stack.ip_local_port_range == (32768, 60999) and snap.stack.somaxconn == 4096
    assert any(a.address == ipaddress.IPv4Address("127.0.0.1") for a in snap.addresses)
    assert any(link.loopback for link in snap.links)


def test_a_run_makes_exactly_one_fd_scan():
    scanner = CountingScanner(ProcRoot(str(HOST1 / "proc")))
    collector = _recorded(owner_scanner=scanner)
    snaps = collector.snapshots([None, None])
    assert len(snaps) == 2 and len(scanner.starts) == 1
    run = collector.read_all()
    assert len(scanner.starts) == 2 and run.owner_scan is not None
    collector.read(owners=run.owner_scan)  # reusing a scan makes none
    collector.configured(owner_scope=OwnerScope.NONE).snapshot()
    assert len(scanner.starts) == 2


@pytest.mark.linux
def test_all_namespaces_share_one_fd_scan_on_this_host():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    scanner = CountingScanner()
    try:
        snaps = Collector(owner_scanner=scanner).snapshots(all_netns=True)
    finally:
        port = listener.getsockname()[1]
        listener.close()
    assert len(scanner.starts) == 1 and scanner.starts[0] is None  # every process, every namespace
    mine = [s for s in snaps[0].sockets if s.local.port == port and s.is_listener]
    assert [k.pid for k in mine[0].owners] == [os.getpid()]


def test_listening_states_keep_listeners_only(host1_expected):
    snap = _recorded(states=States.LISTENING).snapshot()
    assert snap.sockets and all(s.state in (TcpState.LISTEN, TcpState.UNCONN) for s in snap.sockets)
    assert host1_expected["udp"] in {s.local.port for s in snap.sockets}


def test_time_wait_counts_replace_rows(host1_expected):
    reading = _recorded(
        protos=(Proto.TCP,), states=States.LISTENING_ESTABLISHED, time_wait=TimeWait.COUNTS
    ).read()
    states = {s.state for s in reading.snapshot.sockets}
    assert states == {TcpState.LISTEN, TcpState.ESTABLISHED}
    to_listener = Endpoint(ipaddress.IPv4Address("127.0.0.1"), host1_expected["listen_any4"])
    assert reading.time_wait_by_dest == {to_listener: 1}  # the client-side TIME_WAIT toward it
    assert reading.time_wait_other == 7  # server-side ones and those toward closed ports
    rows = _recorded().read()
    assert rows.time_wait_by_dest == {} and rows.time_wait_other == 0


def test_listener_owner_scope_attributes_listeners_only():
    snap = _recorded(owner_scope=OwnerScope.LISTENERS).snapshot()
    assert any(s.owners for s in snap.sockets)
    assert all(s.is_listener for s in snap.sockets if s.owners)
    assert [g.what for g in snap.gaps] == ["owner of 1 socket"]  # the unowned listener only


def test_no_owner_scope_says_so():
    snap = _recorded(owner_scope=OwnerScope.NONE).snapshot()
    assert not any(s.owners for s in snap.sockets) and snap.processes == {}
    assert [g.what for g in snap.gaps] == ["process owners"]


def test_procfs_source_on_the_recorded_tables(host1_expected):
    snap = _recorded(source=ProcfsSource(ProcRoot(str(HOST1 / "proc")))).snapshot()
    assert snap.source == "procfs"
    assert snap.gaps[0].what.startswith("backlog")
    ports = {s.local.port for s in snap.sockets if s.is_listener}
    assert host1_expected["listen_127"] in ports and host1_expected["udp"] in ports


def test_fallback_when_sock_diag_is_unavailable():
    source = FallbackSource(
        SockDiagSource(ReplayTransports({})), ProcfsSource(ProcRoot(str(HOST1 / "proc")))
    )
    snap = _recorded(source=source).snapshot()
    assert snap.source == "procfs"
    assert snap.gaps[0].what == "sock_diag" and "fell back" in snap.gaps[0].reason


def test_source_choice_is_made_in_one_place():
    assert isinstance(choose_source("auto"), FallbackSource)
    assert isinstance(choose_source("sock_diag"), SockDiagSource)
    assert isinstance(choose_source("procfs"), ProcfsSource)
    assert isinstance(choose_source("psutil"), PsutilSource)
    with pytest.raises(UsageError):
        choose_source("ss")
    with pytest.raises(UsageError):
        take_snapshot(source="ss")


@pytest.mark.linux
def test_take_snapshot_is_the_collector():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        snap = take_snapshot(listening_only=True)
    finally:
        port = listener.getsockname()[1]
        listener.close()
    assert all(s.state in (TcpState.LISTEN, TcpState.UNCONN) for s in snap.sockets)
    (mine,) = [s for s in snap.sockets if s.local.port == port]
    assert [k.pid for k in mine.owners] == [os.getpid()]


class _VanishingNamespaces:
    """Three namespaces listed; the middle one is gone by the time it is entered (a container
    stopped mid-run): ``run`` raises the NetnsError that setns(2) on a deleted namespace gives."""

    def __init__(self) -> None:
        from loopscope.backends.linux.netns import NetnsTarget

        self.targets = [
            NetnsTarget(path="/proc/self/ns/net", label="host", id=NS),
            NetnsTarget(path="/run/netns/gone", label="gone", id=NetnsId(4, 1)),
            NetnsTarget(path="/run/netns/kept", label="kept", id=NetnsId(4, 2)),
        ]

    def resolve(self, spec: str | None) -> object:
        return next(t for t in self.targets if spec in (None, t.label))

    def list(self, pid_netns: object) -> list[object]:
        return list(self.targets)

    def run(self, target: object, fn: object) -> object:
        from loopscope.errors import NetnsError

        if getattr(target, "label", "") == "gone":
            raise NetnsError("cannot open network namespace gone: No such file or directory")
        return fn()  # type: ignore[operator]


def test_all_netns_keeps_the_rest_when_a_namespace_vanishes():
    """Issue #15 item 6: one namespace deleted during --all-netns is a gap, not the end of the run."""
    collector = _recorded(owner_scope=OwnerScope.NONE)
    collector.namespaces = _VanishingNamespaces()  # type: ignore[assignment]
    snaps = collector.snapshots(all_netns=True)
    assert [s.netns_label for s in snaps] == ["host", "kept"]
    gaps = [g for g in snaps[0].gaps if g.what.startswith("netns")]
    assert [(g.what, g.reason) for g in gaps] == [
        ("netns /run/netns/gone", "cannot open network namespace gone: No such file or directory")
    ]
    with pytest.raises(NetnsError):  # asked by name, it is an error
        collector.snapshots(("gone",))


@pytest.mark.linux
def test_listeners_only_scan_fds_in_a_thread_with_the_owners_of_the_forked_scan():
    """`ports`: beside a listeners-only dump the fd scan runs in a thread (no fork), same owners."""
    options = snapshot_options(listening_only=True)
    assert options["owner_scanner"] == ProcOwnerScanner(fork=False)
    assert "owner_scanner" not in snapshot_options()  # a full dump: the forked scan runs beside it
    assert "owner_scanner" not in snapshot_options(listening_only=True, attribute=False)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        port = listener.getsockname()[1]
        threaded = Collector.for_source("auto", **options).snapshot()
        forked_options = {**options, "owner_scanner": ProcOwnerScanner(fork=True)}
        forked = Collector.for_source("auto", **forked_options).snapshot()
    finally:
        listener.close()

    def owners(snap: Snapshot) -> dict[tuple[object, ...], tuple[ProcessKey, ...]]:
        return {s.key: s.owners for s in snap.sockets if s.local.port == port}

    assert [[k.pid for k in ks] for ks in owners(threaded).values()] == [[os.getpid()]]
    assert owners(threaded) == owners(forked)
