"""Portable socket source through psutil (macOS, BSD, Windows, or Linux without netlink and /proc/net).

What it cannot see (declared as gaps by the collector): accept queue length and backlog, socket cookie,
tcp_info, IPV6_V6ONLY, network namespaces other than the caller's; TIME_WAIT rows have no pid.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from loopscope.errors import BackendUnavailable
from loopscope.model import (
    Endpoint,
    Family,
    Gap,
    InterfaceAddress,
    LinkInfo,
    NetnsId,
    ProcessInfo,
    ProcessKey,
    Proto,
    SocketRecord,
    TcpState,
)

__all__ = ["CANNOT_SEE", "read_psutil", "read_psutil_interfaces"]

CANNOT_SEE = (
    Gap(
        what="accept queue and backlog",
        reason="psutil does not report them; use Linux for the full view",
    ),
    Gap(what="other network namespaces", reason="psutil reads the caller's namespace only"),
)

_STATES = {
    "ESTABLISHED": TcpState.ESTABLISHED,
    "SYN_SENT": TcpState.SYN_SENT,
    "SYN_RECV": TcpState.SYN_RECV,
    "FIN_WAIT1": TcpState.FIN_WAIT1,
    "FIN_WAIT2": TcpState.FIN_WAIT2,
    "TIME_WAIT": TcpState.TIME_WAIT,
    "CLOSE": TcpState.CLOSE,
    "CLOSE_WAIT": TcpState.CLOSE_WAIT,
    "LAST_ACK": TcpState.LAST_ACK,
    "LISTEN": TcpState.LISTEN,
    "CLOSING": TcpState.CLOSING,
    "NONE": TcpState.UNCONN,
}


def _endpoint(addr: Any, family: int) -> Endpoint:
    if not addr:
        wildcard = "0.0.0.0" if family == socket.AF_INET else "::"
        return Endpoint(ipaddress.ip_address(wildcard), 0)
    host = addr.ip.split("%", 1)[0]
    return Endpoint(ipaddress.ip_address(host), addr.port)


def read_psutil(netns: NetnsId) -> tuple[list[SocketRecord], dict[ProcessKey, ProcessInfo], int]:
    """Sockets and owners via ``psutil.net_connections("inet")``.

    Returns:
        (sockets, processes, processes that could not be read).

    Raises:
        BackendUnavailable: psutil is missing or refuses (macOS without root raises AccessDenied).
    """
    try:
        import psutil
    except ImportError as exc:
        raise BackendUnavailable("psutil is not installed: pip install psutil") from exc
    try:
        conns = psutil.net_connections("inet")
    except psutil.AccessDenied as exc:
        raise BackendUnavailable("psutil.net_connections needs root on this system") from exc
    sockets: list[SocketRecord] = []
    processes: dict[ProcessKey, ProcessInfo] = {}
    denied = 0
    by_pid: dict[int, ProcessKey] = {}
    for conn in conns:
        proto = Proto.TCP if conn.type == socket.SOCK_STREAM else Proto.UDP
        owners: tuple[ProcessKey, ...] = ()
        if conn.pid:
            key = by_pid.get(conn.pid)
            if key is None:
                try:
                    proc = psutil.Process(conn.pid)
                    with proc.oneshot():
                        key = ProcessKey(conn.pid, int(proc.create_time() * 100))
                        uids = proc.uids() if hasattr(proc, "uids") else None
                        processes[key] = ProcessInfo(
                            key=key,
                            comm=proc.name(),
                            cmdline=tuple(proc.cmdline()),
                            uid=uids.real if uids else None,
                            user=proc.username(),
                            ppid=proc.ppid(),
                        )
                    by_pid[conn.pid] = key
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    denied += 1
            if key is not None:
                owners = (key,)
        state = _STATES.get(conn.status, TcpState.UNCONN if proto is Proto.UDP else TcpState.CLOSE)
        if proto is Proto.UDP and conn.raddr:
            state = TcpState.ESTABLISHED
        sockets.append(
            SocketRecord(
                proto=proto,
                family=Family.INET if conn.family == socket.AF_INET else Family.INET6,
                state=state,
                local=_endpoint(conn.laddr, conn.family),
                remote=_endpoint(conn.raddr, conn.family),
                netns=netns,
                owners=owners,
            )
        )
    return sockets, processes, denied


def read_psutil_interfaces() -> tuple[list[LinkInfo], list[InterfaceAddress]]:
    """Interfaces and their inet/inet6 addresses via ``psutil.net_if_stats`` and ``net_if_addrs``.

    psutil gives no interface index or loopback flag: indexes are positions, and an interface counts as
    loopback when it carries 127.0.0.1 or ::1.

    Raises:
        BackendUnavailable: psutil is missing.
    """
    try:
        import psutil
    except ImportError as exc:
        raise BackendUnavailable("psutil is not installed: pip install psutil") from exc
    stats = psutil.net_if_stats()
    addrs = psutil.net_if_addrs()
    links: list[LinkInfo] = []
    addresses: list[InterfaceAddress] = []
    for index, name in enumerate(sorted(set(stats) | set(addrs)), start=1):
        mine = []
        for a in addrs.get(name, []):
            if a.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = ipaddress.ip_address(a.address.split("%", 1)[0])
            prefix = (
                bin(int(ipaddress.ip_address(a.netmask))).count("1")
                if a.netmask
                else ip.max_prefixlen
            )
            mine.append(InterfaceAddress(interface=name, index=index, address=ip, prefixlen=prefix))
        addresses += mine
        st = stats.get(name)
        loop = any(x.address.is_loopback for x in mine)
        links.append(
            LinkInfo(
                name=name,
                index=index,
                up=bool(st and st.isup),
                running=bool(st and st.isup),
                loopback=loop,
                mtu=st.mtu if st else None,
            )
        )
    return links, addresses
