"""Build Snapshots without a live kernel: from a recorded fixture folder, or from plain records.

Example::

    snap = snapshot_from_recording("tests/fixtures/host1")   # through the collector, on the recording
    snap = make_snapshot([listener("tcp", "0.0.0.0", 6379, owners=[proc(10, "redis-server")])])
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from loopscope.backends.linux import rtnl, sock_diag
from loopscope.backends.linux.netns import NetnsTarget
from loopscope.backends.linux.procfs import ProcRoot
from loopscope.collect import (
    Collector,
    FixedNamespace,
    ProcOwnerScanner,
    ReplayTransports,
    SockDiagSource,
)
from loopscope.model import (
    Endpoint,
    Family,
    InterfaceAddress,
    LinkInfo,
    NetnsId,
    ProcessInfo,
    ProcessKey,
    Proto,
    Snapshot,
    SocketRecord,
    StackFacts,
    TcpState,
)

__all__ = [
    "LO_ADDRESSES",
    "NS",
    "connection",
    "listener",
    "make_snapshot",
    "proc",
    "recorded_collector",
    "snapshot_from_recording",
]

NS = NetnsId(4, 4026531840)
LO_ADDRESSES = (
    InterfaceAddress(
        interface="lo", index=1, address=ipaddress.IPv4Address("127.0.0.1"), prefixlen=8
    ),
    InterfaceAddress(interface="lo", index=1, address=ipaddress.IPv6Address("::1"), prefixlen=128),
    InterfaceAddress(
        interface="eth0", index=2, address=ipaddress.IPv4Address("192.0.2.2"), prefixlen=24
    ),
)
LO_LINKS = (
    LinkInfo(name="lo", index=1, up=True, running=True, loopback=True, mtu=65536),
    LinkInfo(name="eth0", index=2, up=True, running=True, loopback=False, mtu=1500),
)


def _datagrams(path: Path) -> list[bytes]:
    return [bytes.fromhex(h) for h in json.loads(path.read_text())["datagrams"]]


def recorded_collector(folder: str | Path, *, netns: NetnsId = NS, **options: Any) -> Collector:
    """The collector on a recorded fixture folder: ``sock_diag.json`` and ``rtnl.json`` replayed
    (:class:`~loopscope.collect.sources.ReplayTransports`), ``proc/`` as the ProcRoot (fd scan, process
    details, sysctls), one fixed namespace labelled ``host``, clock at 0.

    Args:
        folder: written by ``python -m loopscope.testing.record``.
        netns: the namespace id the records get.
        options: more :class:`~loopscope.collect.collector.Collector` options (``states``, ...;
            ``source`` replaces the replayed sock_diag).
    """
    base = Path(folder)
    transports = ReplayTransports(
        {
            sock_diag.NETLINK_SOCK_DIAG: _datagrams(base / "sock_diag.json"),
            rtnl.NETLINK_ROUTE: _datagrams(base / "rtnl.json"),
        }
    )
    root = ProcRoot(str(base / "proc"))
    options.setdefault("tcp_info", True)
    options.setdefault("owner_scanner", ProcOwnerScanner(root=root, fork=False))
    options.setdefault("source", SockDiagSource(transports))
    return Collector(
        proc_root=root,
        transports=transports,
        namespaces=FixedNamespace(NetnsTarget(path=str(base), label="host", id=netns)),
        clock_ns=lambda: 0,
        **options,
    )


def snapshot_from_recording(folder: str | Path, *, netns: NetnsId = NS) -> Snapshot:
    """A Snapshot of a recorded fixture folder, read by :func:`recorded_collector`."""
    return recorded_collector(folder, netns=netns).snapshot()


def proc(
    pid: int, comm: str, *, pgid: int | None = None, cgroup: str | None = None, user: str = "root"
) -> ProcessInfo:
    """A ProcessInfo with start_ticks = pid * 10."""
    return ProcessInfo(
        key=ProcessKey(pid, pid * 10),
        comm=comm,
        pgid=pgid if pgid is not None else pid,
        cgroup=cgroup,
        uid=0,
        user=user,
        netns=NS,
    )


def _ep(addr: str, port: int) -> Endpoint:
    return Endpoint(ipaddress.ip_address(addr), port)


def listener(
    proto: str,
    addr: str,
    port: int,
    *,
    owners: Iterable[ProcessInfo] = (),
    v6only: bool | None = None,
    accept_queue: int = 0,
    backlog: int = 128,
    inode: int | None = None,
) -> SocketRecord:
    """A listening socket (TCP LISTEN or unconnected UDP)."""
    ip = ipaddress.ip_address(addr)
    family = Family.INET if ip.version == 4 else Family.INET6
    tcp = proto == "tcp"
    return SocketRecord(
        proto=Proto(proto),
        family=family,
        state=TcpState.LISTEN if tcp else TcpState.UNCONN,
        local=Endpoint(ip, port),
        remote=_ep("0.0.0.0" if ip.version == 4 else "::", 0),
        netns=NS,
        inode=inode or port * 7 + ip.version,
        uid=0,
        accept_queue=accept_queue if tcp else None,
        backlog=backlog if tcp else None,
        v6only=v6only if family is Family.INET6 else None,
        owners=tuple(p.key for p in owners),
    )


def connection(
    client: tuple[str, int],
    server: tuple[str, int],
    *,
    client_owner: ProcessInfo | None,
    server_owner: ProcessInfo | None,
    state: TcpState = TcpState.ESTABLISHED,
) -> list[SocketRecord]:
    """The two ends of a TCP connection (only the client end when ``state`` is TIME_WAIT)."""
    c_ep, s_ep = _ep(*client), _ep(*server)
    family = Family.INET if c_ep.address.version == 4 else Family.INET6
    tw = state is TcpState.TIME_WAIT
    ends = [
        SocketRecord(
            proto=Proto.TCP,
            family=family,
            state=state,
            local=c_ep,
            remote=s_ep,
            netns=NS,
            inode=None if tw else c_ep.port * 13,
            owners=(client_owner.key,) if client_owner and not tw else (),
        )
    ]
    if not tw:
        ends.append(
            SocketRecord(
                proto=Proto.TCP,
                family=family,
                state=state,
                local=s_ep,
                remote=c_ep,
                netns=NS,
                inode=c_ep.port * 17,
                owners=(server_owner.key,) if server_owner else (),
            )
        )
    return ends


def make_snapshot(
    sockets: Iterable[SocketRecord],
    processes: Iterable[ProcessInfo] = (),
    *,
    stack: StackFacts | None = None,
    links: tuple[LinkInfo, ...] = LO_LINKS,
) -> Snapshot:
    """A Snapshot of the given records in namespace NS, with lo/eth0 addresses."""
    return Snapshot(
        taken_at_ns=0,
        netns=NS,
        netns_label="host",
        source="test",
        sockets=tuple(sockets),
        processes={p.key: p for p in processes},
        addresses=LO_ADDRESSES,
        links=links,
        stack=stack or StackFacts(ip_local_port_range=(32768, 60999), somaxconn=4096),
    )
