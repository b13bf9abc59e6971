"""Connection events over time: what ``loopscope watch`` collects (stdlib only, no I/O).

Three sources produce them (see /work/shared/research/loopback-event-sources.md):

- eBPF sockops on the root cgroup v2: :class:`ConnectEvent` at ``connect()`` (client pid exact) and at
  passive establishment (server side; the pid there is whoever ran the softirq, so it is not kept).
- sock_diag destroy multicast: :class:`CloseEvent` for every TCP socket the kernel frees.
- AF_PACKET capture on ``lo``: :class:`HttpEvent` for HTTP/1.x request lines and status lines.

Timestamps are CLOCK_REALTIME nanoseconds (backends convert from the kernel's monotonic clock).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from loopscope.model.records import Endpoint, Family, NetnsId, TcpInfo

__all__ = ["CloseEvent", "ConnectEvent", "ConnectKind", "HttpEvent", "HttpKind", "SourceStatus"]


class ConnectKind(str, enum.Enum):
    """Which end of a TCP connection an eBPF sockops event describes."""

    ACTIVE = "active"
    """The client's ``connect()`` (BPF_SOCK_OPS_TCP_CONNECT_CB), in the caller's process context."""
    PASSIVE = "passive"
    """The server's accepted socket becoming established (BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectEvent:
    """A TCP connection starting, seen by the eBPF sockops program.

    Example: a client pid 4242 connecting 127.0.0.1:53110 -> 127.0.0.1:8080 gives
    ``ConnectEvent(kind=ACTIVE, pid=4242, local=127.0.0.1:53110, remote=127.0.0.1:8080, ...)``.
    """

    at_ns: int
    """When the kernel ran the program, CLOCK_REALTIME nanoseconds."""
    kind: ConnectKind
    """Client connect or server-side establishment."""
    family: Family
    """inet or inet6 (an inet6 socket may carry IPv4-mapped addresses)."""
    local: Endpoint
    """This socket's address and port (the client's ephemeral port for ACTIVE)."""
    remote: Endpoint
    """The peer's address and port (the server's listener port for ACTIVE)."""
    cookie: int
    """Socket cookie (``bpf_get_socket_cookie``; equals the sock_diag cookie of the same socket)."""
    pid: int | None = None
    """Thread-group id (process id) that called ``connect()``; None for PASSIVE (softirq context)."""
    tid: int | None = None
    """Thread id that called ``connect()``; None for PASSIVE."""
    netns_cookie: int | None = None
    """Network namespace cookie of the socket (``bpf_get_netns_cookie``; ``SO_NETNS_COOKIE``); None when
    the kernel cannot report it (eBPF sees every namespace, so events are then not filtered)."""
    comm: str | None = None
    """Name of the calling thread at ``connect()`` (``bpf_get_current_comm``, at most 15 characters);
    None for PASSIVE (softirq context) or when the kernel refused the helper."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseEvent:
    """A TCP socket destroyed by the kernel (sock_diag destroy multicast, what ``ss -E`` shows).

    One per full socket: the client end, the server's accepted end and a closed listener each give one.
    When the client closed with RST its own message has the remote address 0.0.0.0 and port 0; the
    server's accepted end keeps the full 4-tuple.
    """

    at_ns: int
    """When loopscope received the message, CLOCK_REALTIME nanoseconds."""
    family: Family
    """inet or inet6."""
    local: Endpoint
    """Local address and port."""
    remote: Endpoint
    """Remote address and port (0.0.0.0:0 when lost, see class docstring)."""
    cookie: int
    """Socket cookie."""
    netns: NetnsId
    """Namespace the subscription (and so the socket) lives in."""
    tcp_info: TcpInfo | None = None
    """Counters at close (bytes, segments, rtt), when the kernel attached INET_DIAG_INFO."""


class HttpKind(str, enum.Enum):
    """HTTP/1.x message start line kind."""

    REQUEST = "request"
    RESPONSE = "response"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpEvent:
    """An HTTP/1.x request line or status line seen on ``lo``.

    Example: ``GET /api/x HTTP/1.1`` from 127.0.0.1:53110 to 127.0.0.1:8080 ->
    ``HttpEvent(kind=REQUEST, method="GET", path="/api/x", client=..:53110, server=..:8080)``.
    """

    at_ns: int
    """Capture time of the segment, CLOCK_REALTIME nanoseconds."""
    kind: HttpKind
    """Request or response."""
    client: Endpoint
    """Client end of the connection."""
    server: Endpoint
    """Server end (the listener's address and port)."""
    method: str | None = None
    """Request method, e.g. ``GET`` (requests only)."""
    path: str | None = None
    """Request target's path key (requests only): the path without the query string, except a front
    controller's routing parameter (``/?rest_route=/wp/v2/posts``; see
    ``backends.linux.http_capture.parse_path_key``)."""
    status: int | None = None
    """Status code (responses only)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceStatus:
    """Whether one event source answered during a watch, and why not when it did not."""

    name: str
    """``ebpf_sockops``, ``sock_diag_destroy``, ``snapshots`` or ``http_capture``."""
    active: bool
    """True when the source ran for the window."""
    reason: str = ""
    """Why it is off (e.g. ``bpf(): EPERM, needs root``), or what it covered."""
    events: int = 0
    """Events it delivered."""
    dropped: int = 0
    """Events it lost (kernel queue full, ENOBUFS)."""
