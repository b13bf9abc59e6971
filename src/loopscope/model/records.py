"""Frozen records that every layer shares: sockets, processes, namespaces, snapshots, findings, gaps.

One shape on every platform; a value the source cannot see is ``None``, never ``-1``.
Standard library only: this module does no I/O.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "Endpoint",
    "Family",
    "Finding",
    "Gap",
    "IPAddress",
    "InterfaceAddress",
    "LinkInfo",
    "NetnsId",
    "ProcessInfo",
    "ProcessKey",
    "Proto",
    "Scope",
    "Severity",
    "Snapshot",
    "SocketRecord",
    "StackFacts",
    "TcpInfo",
    "TcpState",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Endpoint(NamedTuple):
    """One end of a socket: an address and a port (host byte order, 0 = unset)."""

    address: IPAddress
    port: int

    def __str__(self) -> str:
        if self.address.version == 6:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


class Proto(str, enum.Enum):
    """Transport protocol."""

    TCP = "tcp"
    UDP = "udp"

    def __str__(self) -> str:
        return self.value


class Family(str, enum.Enum):
    """Address family of the socket (an AF_INET6 socket may carry IPv4-mapped addresses)."""

    INET = "inet"
    INET6 = "inet6"

    def __str__(self) -> str:
        return self.value


class TcpState(str, enum.Enum):
    """Socket state as the kernel names it (include/net/tcp_states.h).

    UDP sockets use ``ESTABLISHED`` when connected and ``UNCONN`` (kernel TCP_CLOSE) when not, as ``ss``
    prints them.
    """

    ESTABLISHED = "ESTABLISHED"
    SYN_SENT = "SYN_SENT"
    SYN_RECV = "SYN_RECV"
    FIN_WAIT1 = "FIN_WAIT1"
    FIN_WAIT2 = "FIN_WAIT2"
    TIME_WAIT = "TIME_WAIT"
    CLOSE = "CLOSE"
    CLOSE_WAIT = "CLOSE_WAIT"
    LAST_ACK = "LAST_ACK"
    LISTEN = "LISTEN"
    CLOSING = "CLOSING"
    NEW_SYN_RECV = "NEW_SYN_RECV"
    UNCONN = "UNCONN"

    def __str__(self) -> str:
        return self.value


class Scope(str, enum.Enum):
    """Who can reach an address.

    - ``LOOPBACK``: 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104; only this host (this netns).
    - ``WILDCARD``: 0.0.0.0 or ::; every address of the netns, so other hosts too.
    - ``OWN_ADDRESS`` (``own-address``): an address configured on an interface of this netns (the eth0
      IP); other hosts on that network, and this host itself (traffic to it is routed through ``lo``).
      Not iproute2's ``scope host``, which marks addresses valid inside this host only (127.0.0.1/8).
    - ``OTHER``: none of the above (a remote peer, or an address not configured here).
    """

    LOOPBACK = "loopback"
    WILDCARD = "wildcard"
    OWN_ADDRESS = "own-address"
    OTHER = "other"

    def __str__(self) -> str:
        return self.value


class Severity(str, enum.Enum):
    """Finding severity, ordered ``info < low < medium < high < critical``."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info up to 4 for critical."""
        return _SEVERITY_RANK[self]

    def __str__(self) -> str:
        return self.value


_SEVERITY_RANK = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}


class NetnsId(NamedTuple):
    """Identity of a network namespace: ``st_dev`` and ``st_ino`` of its nsfs file.

    ``/proc/PID/ns/net`` and ``/run/netns/NAME`` of the same namespace give the same pair.
    """

    dev: int
    ino: int

    def __str__(self) -> str:
        return f"net:[{self.ino}]"


class ProcessKey(NamedTuple):
    """Identity of a process that survives pid reuse: pid and start time in clock ticks since boot
    (``/proc/PID/stat`` field 22)."""

    pid: int
    start_ticks: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessInfo:
    """A process that owns one or more sockets."""

    key: ProcessKey
    """pid and start time."""
    comm: str
    """Kernel short name (``/proc/PID/comm``, at most 15 characters)."""
    cmdline: tuple[str, ...] = ()
    """argv, empty for kernel threads or when unreadable."""
    uid: int | None = None
    """Real uid (``/proc/PID/status`` Uid, first column)."""
    user: str | None = None
    """User name for ``uid``, None if the uid has no passwd entry."""
    ppid: int | None = None
    """Parent pid."""
    pgid: int | None = None
    """Process group id (``/proc/PID/stat`` field 5); prefork workers share their master's."""
    cgroup: str | None = None
    """cgroup v2 path (``/proc/PID/cgroup`` line ``0::``), None on cgroup v1 only hosts."""
    netns: NetnsId | None = None
    """Network namespace of the process (``/proc/PID/ns/net``)."""

    @property
    def pid(self) -> int:
        """Process id."""
        return self.key.pid

    @property
    def name(self) -> str:
        """Display name: ``comm``."""
        return self.comm


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpInfo:
    """A subset of ``struct tcp_info`` (include/uapi/linux/tcp.h), from INET_DIAG_INFO.

    Fields a kernel's shorter struct does not carry are None.
    """

    rtt_us: int | None = None
    """Smoothed RTT, microseconds (tcpi_rtt)."""
    rttvar_us: int | None = None
    """RTT variance, microseconds (tcpi_rttvar)."""
    min_rtt_us: int | None = None
    """Minimum RTT seen, microseconds (tcpi_min_rtt)."""
    total_retrans: int | None = None
    """Segments retransmitted over the connection's life (tcpi_total_retrans)."""
    bytes_acked: int | None = None
    """Bytes acknowledged by the peer (tcpi_bytes_acked; counts SYN and FIN as one byte each)."""
    bytes_received: int | None = None
    """Bytes received (tcpi_bytes_received; counts SYN and FIN as one byte each)."""
    bytes_sent: int | None = None
    """Bytes sent, retransmissions included (tcpi_bytes_sent)."""
    segs_in: int | None = None
    """Segments received (tcpi_segs_in)."""
    segs_out: int | None = None
    """Segments sent (tcpi_segs_out)."""
    last_data_recv_ms: int | None = None
    """Milliseconds since data was last received (tcpi_last_data_recv)."""
    snd_cwnd: int | None = None
    """Congestion window, segments (tcpi_snd_cwnd)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketRecord:
    """One TCP or UDP socket as the kernel reports it.

    Identity: ``(netns, inode)`` for sockets with an inode; TIME_WAIT and NEW_SYN_RECV rows have no
    inode (None) and are keyed by ``(netns, proto, local, remote)``.
    """

    proto: Proto
    """tcp or udp."""
    family: Family
    """inet or inet6."""
    state: TcpState
    """Kernel state."""
    local: Endpoint
    """Local address and port."""
    remote: Endpoint
    """Remote address and port; the wildcard address and port 0 for listeners and unconnected UDP."""
    netns: NetnsId
    """Namespace the socket lives in."""
    inode: int | None = None
    """Socket inode (``socket:[N]`` in /proc/PID/fd); None when the kernel gives 0."""
    cookie: int | None = None
    """Socket cookie (64-bit, stable for the socket's life; ``bpf_get_socket_cookie``)."""
    uid: int | None = None
    """Owning uid of the socket; None when not reported (TIME_WAIT)."""
    recv_queue_bytes: int | None = None
    """Bytes not yet read by the application; None for LISTEN (see ``accept_queue``)."""
    send_queue_bytes: int | None = None
    """Bytes not yet acknowledged by the peer; None for LISTEN (see ``backlog``)."""
    accept_queue: int | None = None
    """LISTEN only: connections completed and waiting for accept() (inet_diag idiag_rqueue)."""
    backlog: int | None = None
    """LISTEN only: the accept queue limit, min(listen() backlog, somaxconn) (idiag_wqueue)."""
    v6only: bool | None = None
    """AF_INET6 only: IPV6_V6ONLY (INET_DIAG_SKV6ONLY); False means [::] also accepts IPv4."""
    interface: int | None = None
    """Bound interface index (SO_BINDTODEVICE or scope id), None if unbound."""
    cgroup_id: int | None = None
    """cgroup v2 id of the socket's creator (INET_DIAG_CGROUP_ID)."""
    tcp_info: TcpInfo | None = None
    """tcp_info when asked for and available."""
    owners: tuple[ProcessKey, ...] = ()
    """Processes holding an fd to this socket; several for prefork servers; empty when unknown."""

    @property
    def is_listener(self) -> bool:
        """True for TCP LISTEN sockets and unconnected UDP sockets bound to a port."""
        return self.state is TcpState.LISTEN or (
            self.proto is Proto.UDP and self.state is TcpState.UNCONN and self.local.port != 0
        )

    @property
    def key(self) -> tuple[object, ...]:
        """Stable identity within a snapshot (see class docstring)."""
        if self.inode is not None:
            return (self.netns, self.inode)
        return (self.netns, self.proto, self.local, self.remote)


@dataclass(frozen=True, slots=True, kw_only=True)
class InterfaceAddress:
    """An address configured on an interface (netlink RTM_GETADDR)."""

    interface: str
    """Interface name, e.g. ``lo``, ``eth0``."""
    index: int
    """Interface index."""
    address: IPAddress
    """The address."""
    prefixlen: int
    """Prefix length in bits."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkInfo:
    """An interface (netlink RTM_GETLINK)."""

    name: str
    """Interface name."""
    index: int
    """Interface index."""
    up: bool
    """IFF_UP set (administratively up)."""
    running: bool
    """IFF_RUNNING / IFF_LOWER_UP set (operationally up)."""
    loopback: bool
    """IFF_LOOPBACK set."""
    mtu: int | None = None
    """MTU in bytes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StackFacts:
    """Sysctls of a network namespace that matter for loopback, read from /proc/sys/net.

    A value that could not be read is None.
    """

    ip_local_port_range: tuple[int, int] | None = None
    """net.ipv4.ip_local_port_range: the ephemeral port range, inclusive."""
    ip_local_reserved_ports: str | None = None
    """net.ipv4.ip_local_reserved_ports, as written."""
    somaxconn: int | None = None
    """net.core.somaxconn: the cap on every listen() backlog."""
    bindv6only: bool | None = None
    """net.ipv6.bindv6only: default of IPV6_V6ONLY for new sockets."""
    ipv6_disabled_all: bool | None = None
    """net.ipv6.conf.all.disable_ipv6."""
    ipv6_disabled_lo: bool | None = None
    """net.ipv6.conf.lo.disable_ipv6."""
    tcp_tw_reuse: int | None = None
    """net.ipv4.tcp_tw_reuse (0 off, 1 on, 2 loopback only)."""
    tcp_fin_timeout_s: int | None = None
    """net.ipv4.tcp_fin_timeout, seconds."""
    route_localnet_all: bool | None = None
    """net.ipv4.conf.all.route_localnet (127/8 routable off lo)."""
    ping_group_range: tuple[int, int] | None = None
    """net.ipv4.ping_group_range (gids allowed unprivileged ICMP sockets)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap:
    """Something a source could not see, and why.

    Example: ``Gap(what="owner of 12 sockets", reason="permission denied on /proc/PID/fd; run as root",
    count=12)``.
    """

    what: str
    """What is missing."""
    reason: str
    """Why, in plain words, with the remedy when there is one."""
    count: int = 1
    """How many items are affected."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """A problem or fact worth a look, with a stable code."""

    code: str
    """Stable upper-case code, e.g. ``EXPOSED_SENSITIVE_SERVICE``."""
    severity: Severity
    """How bad."""
    subject: str
    """What it is about, e.g. ``redis-server 0.0.0.0:6379/tcp``."""
    evidence: str
    """What was read, with numbers."""
    remedy: str
    """What to do, in plain words."""
    netns: NetnsId | None = None
    """Namespace the finding applies to."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The sockets of one network namespace at one moment, with their owners and the stack facts."""

    taken_at_ns: int
    """CLOCK_REALTIME nanoseconds when the dump started."""
    netns: NetnsId
    """The namespace."""
    netns_label: str
    """Human label: ``host``, the /run/netns name, or ``pid 1234``."""
    source: str
    """Which backend answered: ``sock_diag``, ``procfs``, ``psutil``."""
    sockets: tuple[SocketRecord, ...] = ()
    """Every TCP/UDP socket read."""
    processes: dict[ProcessKey, ProcessInfo] = field(default_factory=dict)
    """Owners of the sockets, by key."""
    addresses: tuple[InterfaceAddress, ...] = ()
    """Addresses configured in the namespace."""
    links: tuple[LinkInfo, ...] = ()
    """Interfaces of the namespace."""
    stack: StackFacts = field(default_factory=StackFacts)
    """Sysctls."""
    gaps: tuple[Gap, ...] = ()
    """What could not be seen, and why."""
    duration_ns: int | None = None
    """Wall time taken to read the snapshot, nanoseconds."""
