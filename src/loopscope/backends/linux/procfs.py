"""/proc readers: socket inode -> owning processes, process details, sysctls, /proc/net tables.

Every reader takes a :class:`ProcRoot`, so tests can point it at a recorded tree
(``ProcRoot("/path/to/recorded/proc")``). Sources of truth: proc(5), fs/proc/array.c (stat fields),
net/ipv4/tcp_ipv4.c ``get_tcp4_sock`` (/proc/net/tcp format).
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import socket
import struct
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from loopscope.backends.linux.fdtables import scan_fd_tables
from loopscope.errors import ParseError
from loopscope.model import (
    Endpoint,
    Family,
    NetnsId,
    ProcessInfo,
    ProcessKey,
    Proto,
    SocketRecord,
    StackFacts,
    TcpState,
)

__all__ = [
    "OwnerScan",
    "ProcRoot",
    "decode_address",
    "parse_proc_net_line",
    "parse_stat",
    "read_proc_net",
    "read_process",
    "read_stack_facts",
    "read_sysctl",
    "scan_socket_owners",
]


@dataclass(frozen=True, slots=True)
class ProcRoot:
    """Where /proc is: the real one, or a recorded tree for tests."""

    path: str = "/proc"

    def join(self, *parts: str) -> str:
        """``ProcRoot().join("1", "stat") == "/proc/1/stat"``."""
        return os.path.join(self.path, *parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerScan:
    """Result of one pass over /proc/*/fd: which processes hold which socket inodes.

    The one owner-scan type: :func:`scan_socket_owners` returns it in-process, and
    :mod:`~loopscope.backends.linux.fdscan` sends it back from a forked child.
    """

    owners: dict[int, tuple[ProcessKey, ...]] = field(default_factory=dict)
    """Socket inode -> keys of every process holding an fd to it, sorted by pid."""
    keys: dict[int, ProcessKey] = field(default_factory=dict)
    """pid -> key of each process that holds at least one of the sockets in ``owners``."""
    pid_netns: dict[NetnsId, int] = field(default_factory=dict)
    """Each namespace seen -> one pid inside it (to reach namespaces that have no name)."""
    denied_pids: int = 0
    """Processes whose fd table (or, with a namespace filter, whose namespace) could not be read
    (EACCES)."""
    vanished_pids: int = 0
    """Processes that exited during the scan."""


def parse_stat(text: str, path: str = "stat") -> tuple[str, int, int, int]:
    """Parse /proc/PID/stat: ``(comm, ppid, pgid, start_ticks)``.

    comm is between the first "(" and the last ")" (it may contain spaces and parentheses).

    Example: ``parse_stat("42 (my (app)) S 1 42 42 0 -1 4194560 " + "0 " * 13 + "9876 ...")``
    -> ``("my (app)", 1, 42, 9876)`` (start time is field 22).

    Raises:
        ParseError: no parenthesised comm or too few fields.
    """
    open_at = text.find("(")
    close_at = text.rfind(")")
    if open_at < 0 or close_at < open_at:
        raise ParseError("no (comm) in stat line", path=path, lineno=1, line=text[:80])
    comm = text[open_at + 1 : close_at]
    rest = text[close_at + 2 :].split()
    # rest[0] is field 3 (state); field n is rest[n - 3]
    if len(rest) < 20:
        raise ParseError(
            f"stat has {len(rest) + 2} fields, need 22", path=path, lineno=1, line=text[:80]
        )
    try:
        return comm, int(rest[1]), int(rest[2]), int(rest[19])
    except ValueError:
        raise ParseError("non-numeric stat field", path=path, lineno=1, line=text[:80]) from None


def scan_socket_owners(
    root: ProcRoot = ProcRoot(),
    *,
    want: set[int] | None = None,
    skip_pid: int | None = None,
    netns: Collection[NetnsId] | None = None,
) -> OwnerScan:
    """One pass over /proc/*/fd: which processes hold which socket inodes.

    The walk is :func:`~loopscope.backends.linux.fdtables.scan_fd_tables`: each /proc/PID/fd
    directory opened once and read with ``os.readlink(name, dir_fd=...)`` (~4.5-7 us per fd on this
    kind of machine); threads share the fd table, so only thread-group leaders (/proc/PID) are read.

    Args:
        root: where /proc is.
        want: keep only these inodes (None keeps every socket inode).
        skip_pid: a process to leave out (a forked scanner holds copies of its parent's fds).
        netns: read only the fd tables of processes in these namespaces (one ``stat`` of
            /proc/PID/ns/net each first; a busy host holds 100k socket fds in other namespaces). A socket
            passed to a process of another namespace is then missed (rare). None reads every process.

    Returns:
        An :class:`OwnerScan`; processes that exit mid-scan or are unreadable are counted, not raised.

    Raises:
        ParseError: ``root`` cannot be listed.
    """
    owners, keys, pid_netns, denied, vanished = scan_fd_tables(
        root.path, want=want, skip_pid=skip_pid, netns=netns, make_key=ProcessKey, make_ns=NetnsId
    )
    return OwnerScan(
        owners={inode: tuple(ks) for inode, ks in owners.items()},
        keys=keys,
        pid_netns=pid_netns,
        denied_pids=denied,
        vanished_pids=vanished,
    )


_USER_CACHE: dict[int, str | None] = {}


def _user_name(uid: int) -> str | None:
    if uid not in _USER_CACHE:
        try:
            _USER_CACHE[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _USER_CACHE[uid] = None
    return _USER_CACHE[uid]


def read_process(key: ProcessKey, root: ProcRoot = ProcRoot()) -> ProcessInfo | None:
    """Details of one process; None when it exited (or was replaced: start time differs).

    Reads /proc/PID/stat, status (Uid), cmdline, cgroup (``0::`` line), ns/net.
    """
    pid = str(key.pid)
    try:
        with open(root.join(pid, "stat"), "rb") as fh:
            comm, ppid, pgid, ticks = parse_stat(
                fh.read().decode(errors="replace"), root.join(pid, "stat")
            )
    except (OSError, ParseError):
        return None
    if ticks != key.start_ticks:
        return None
    uid: int | None = None
    try:
        with open(root.join(pid, "status"), "rb") as fh:
            for line in fh:
                if line.startswith(b"Uid:"):
                    uid = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError):
        uid = None
    try:
        with open(root.join(pid, "cmdline"), "rb") as fh:
            cmdline = tuple(a.decode(errors="replace") for a in fh.read().split(b"\0") if a)
    except OSError:
        cmdline = ()
    cgroup: str | None = None
    try:
        with open(root.join(pid, "cgroup"), "rb") as fh:
            for line in fh:
                if line.startswith(b"0::"):
                    cgroup = line[3:].strip().decode(errors="replace")
    except OSError:
        cgroup = None
    try:
        st = os.stat(root.join(pid, "ns", "net"))
        netns: NetnsId | None = NetnsId(st.st_dev, st.st_ino)
    except OSError:
        netns = None
    return ProcessInfo(
        key=key,
        comm=comm,
        cmdline=cmdline,
        uid=uid,
        user=_user_name(uid) if uid is not None else None,
        ppid=ppid,
        pgid=pgid,
        cgroup=cgroup,
        netns=netns,
    )


def read_sysctl(root: ProcRoot, name: str) -> str | None:
    """One sysctl as text, stripped; None when it does not exist here or cannot be read.

    The one sysctl reader: :func:`read_stack_facts` and
    :func:`loopscope.backends.linux.sysctl.read_sysctls` both read through it. ``name`` is written as
    sysctl(8) writes it, a dot between levels and ``/`` for a dot inside a level (an interface
    ``eth0.100``): ``read_sysctl(ProcRoot(), "net.ipv4.conf.eth0/100.route_localnet")`` reads
    ``/proc/sys/net/ipv4/conf/eth0.100/route_localnet``. /proc/sys/net shows the network namespace of
    the *reading thread* (fs/proc/proc_net.c).
    """
    parts = (part.replace("/", ".") for part in name.split("."))
    try:
        with open(root.join("sys", *parts), encoding="ascii", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _pair(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.split()
    if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def _bool(value: str | None) -> bool | None:
    number = _int(value)
    return None if number is None else number != 0


def read_stack_facts(root: ProcRoot = ProcRoot()) -> StackFacts:
    """The loopback-relevant sysctls of the namespace /proc/sys shows.

    /proc/sys/net is per network namespace of the *reading thread* (fs/proc/proc_net.c), so call this
    inside :func:`~loopscope.backends.linux.netns.run_in_netns` for another namespace.
    """
    return StackFacts(
        ip_local_port_range=_pair(read_sysctl(root, "net.ipv4.ip_local_port_range")),
        ip_local_reserved_ports=read_sysctl(root, "net.ipv4.ip_local_reserved_ports"),
        somaxconn=_int(read_sysctl(root, "net.core.somaxconn")),
        bindv6only=_bool(read_sysctl(root, "net.ipv6.bindv6only")),
        ipv6_disabled_all=_bool(read_sysctl(root, "net.ipv6.conf.all.disable_ipv6")),
        ipv6_disabled_lo=_bool(read_sysctl(root, "net.ipv6.conf.lo.disable_ipv6")),
        tcp_tw_reuse=_int(read_sysctl(root, "net.ipv4.tcp_tw_reuse")),
        tcp_fin_timeout_s=_int(read_sysctl(root, "net.ipv4.tcp_fin_timeout")),
        route_localnet_all=_bool(read_sysctl(root, "net.ipv4.conf.all.route_localnet")),
        ping_group_range=_pair(read_sysctl(root, "net.ipv4.ping_group_range")),
    )


# ---------------------------------------------------------------------------------------------------
# /proc/net/{tcp,tcp6,udp,udp6}: the fallback when sock_diag is unavailable.

_PROC_STATES = {
    1: TcpState.ESTABLISHED,
    2: TcpState.SYN_SENT,
    3: TcpState.SYN_RECV,
    4: TcpState.FIN_WAIT1,
    5: TcpState.FIN_WAIT2,
    6: TcpState.TIME_WAIT,
    7: TcpState.CLOSE,
    8: TcpState.CLOSE_WAIT,
    9: TcpState.LAST_ACK,
    10: TcpState.LISTEN,
    11: TcpState.CLOSING,
    12: TcpState.NEW_SYN_RECV,
}


def decode_address(text: str) -> Endpoint:
    """Decode a /proc/net address column (address words in host byte order, port in hex).

    Example (little-endian host): ``decode_address("0100007F:1F90")`` ->
    ``Endpoint(IPv4Address("127.0.0.1"), 8080)``; 32 hex digits are an IPv6 address written as four
    host-order 32-bit words.

    Raises:
        ParseError: not ``HEX:HEX`` with 8 or 32 address digits.
    """
    addr_hex, sep, port_hex = text.partition(":")
    try:
        if not sep or len(port_hex) != 4:
            raise ValueError
        port = int(port_hex, 16)
        raw = bytes.fromhex(addr_hex)
        if len(raw) == 4:
            return Endpoint(
                ipaddress.IPv4Address(struct.pack("=I", struct.unpack(">I", raw)[0])), port
            )
        if len(raw) == 16:
            words = struct.unpack(">4I", raw)
            return Endpoint(ipaddress.IPv6Address(struct.pack("=4I", *words)), port)
    except ValueError:
        pass
    raise ParseError(f"bad address {text!r}", path="/proc/net")


def parse_proc_net_line(
    line: str,
    *,
    proto: Proto,
    family: Family,
    netns: NetnsId,
    path: str = "/proc/net/tcp",
    lineno: int = 0,
) -> SocketRecord:
    """Parse one data line of /proc/net/tcp{,6} or udp{,6}.

    Columns: ``sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...``.
    For LISTEN, rx_queue is the accept queue length; the backlog is not shown in this table (None).

    Raises:
        ParseError: too few columns or a malformed value.
    """
    cols = line.split()
    try:
        if len(cols) < 10:
            raise ValueError("too few columns")
        local = decode_address(cols[1])
        remote = decode_address(cols[2])
        state_no = int(cols[3], 16)
        tx_hex, _, rx_hex = cols[4].partition(":")
        tx, rx = int(tx_hex, 16), int(rx_hex, 16)
        uid, inode = int(cols[7]), int(cols[9])
    except (ValueError, ParseError) as exc:
        raise ParseError(str(exc), path=path, lineno=lineno, line=line.strip()[:120]) from None
    if proto is Proto.UDP and state_no == 7:
        state = TcpState.UNCONN
    elif state_no in _PROC_STATES:
        state = _PROC_STATES[state_no]
    else:
        raise ParseError(
            f"unknown state {state_no}", path=path, lineno=lineno, line=line.strip()[:120]
        )
    listening = state is TcpState.LISTEN
    return SocketRecord(
        proto=proto,
        family=family,
        state=state,
        local=local,
        remote=remote,
        netns=netns,
        inode=inode or None,
        uid=None if state is TcpState.TIME_WAIT else uid,
        recv_queue_bytes=None if listening else rx,
        send_queue_bytes=None if listening else tx,
        accept_queue=rx if listening else None,
    )


def read_proc_net(
    *, netns: NetnsId, root: ProcRoot = ProcRoot(), protos: Iterable[Proto] = (Proto.TCP, Proto.UDP)
) -> list[SocketRecord]:
    """All sockets from /proc/net/{tcp,tcp6,udp,udp6} (the reading thread's namespace).

    A missing file (IPv6 disabled at boot) is skipped.

    Raises:
        ParseError: a malformed line.
    """
    out: list[SocketRecord] = []
    for proto in protos:
        for family, suffix in ((Family.INET, ""), (Family.INET6, "6")):
            path = root.join("net", f"{proto.value}{suffix}")
            try:
                with open(path, encoding="ascii", errors="replace") as fh:
                    lines = fh.readlines()
            except FileNotFoundError:
                continue
            for lineno, line in enumerate(lines[1:], start=2):
                if line.strip():
                    out.append(
                        parse_proc_net_line(
                            line, proto=proto, family=family, netns=netns, path=path, lineno=lineno
                        )
                    )
    return out


def host_is_little_endian() -> bool:
    """True on little-endian hosts (the /proc/net address words are in host order)."""
    return socket.htonl(1) != 1
