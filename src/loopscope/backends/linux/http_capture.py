"""HTTP/1.x request and status lines on ``lo``: an AF_PACKET socket with a classic BPF filter.

The kernel filter (:func:`build_http_filter`, attached with SO_ATTACH_FILTER) passes only TCP segments
that carry payload, to or from the given ports, once per packet (the OUTGOING copy of a loopback packet
is dropped; the HOST copy kept), cut to ``snaplen`` bytes. Python then reads the start line:
``GET /path HTTP/1.1`` (request) or ``HTTP/1.1 200 OK`` (response). TLS and HTTP/2 carry no readable
start line: they are counted at connection level only. A request whose start line does not begin a
segment (pipelining inside one segment) counts once.

Sources of truth: Documentation/networking/filter.rst (classic BPF, ancillary loads SKF_AD_PROTOCOL and
SKF_AD_PKTTYPE), include/uapi/linux/filter.h, include/uapi/linux/if_packet.h, RFC 9112 (start lines).
Needs CAP_NET_RAW.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections.abc import Iterable, Sequence

from loopscope.backends.linux.netns import resolve_netns, run_in_netns
from loopscope.errors import BackendUnavailable
from loopscope.model import Endpoint
from loopscope.model.events import HttpEvent, HttpKind

__all__ = [
    "ROUTING_QUERY_PARAMS",
    "HttpCapture",
    "assemble_classic",
    "build_http_filter",
    "parse_packet",
    "parse_path_key",
]

ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
SOL_PACKET, PACKET_STATISTICS = 263, 6
SO_ATTACH_FILTER, SO_TIMESTAMPNS, SO_RCVBUFFORCE = 26, 35, 33
PACKET_OUTGOING = 4
SKF_AD_OFF = -0x1000
SKF_AD_PROTOCOL, SKF_AD_PKTTYPE = 0, 4
# classic BPF opcodes (include/uapi/linux/filter.h)
LD_W_ABS, LD_H_ABS, LD_B_ABS = 0x20, 0x28, 0x30
LD_H_IND, LD_B_IND = 0x48, 0x50
LDX_B_MSH, LDX_MEM, ST = 0xB1, 0x61, 0x02
JEQ, JSET = 0x15, 0x45
AND_K, RSH_K, ADD_X, SUB_X = 0x54, 0x74, 0x0C, 0x1C
RET_K = 0x06
METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"PATCH", b"OPTIONS", b"TRACE", b"CONNECT")

ROUTING_QUERY_PARAMS = frozenset({"rest_route", "route", "r", "q", "action", "controller", "page"})
"""Query parameters that select the endpoint of a front controller (WordPress ``rest_route``,
``admin-ajax.php?action=``, Yii ``r``, Drupal ``q``, ``admin.php?page=``): kept in the path key."""
_ROUTE_MAX_SEGMENTS = 6
_ROUTE_MAX_CHARS = 80


def _is_front_controller(path: str) -> bool:
    last = path.rsplit("/", 1)[-1]
    return path == "/" or path.endswith(".php") or last.startswith("index.")


def _route_value(raw: str) -> str:
    """Percent-decode; keep the first two ``/`` segments; later segments with a digit become ``{id}``;
    at most 6 segments and 80 characters."""
    from urllib.parse import unquote_plus

    parts = unquote_plus(raw).split("/")
    lead = 1 if parts[0] == "" else 0  # "" before a leading "/"
    out = [
        seg if k - lead < 2 or not any(ch.isdigit() for ch in seg) else "{id}"
        for k, seg in enumerate(parts[: _ROUTE_MAX_SEGMENTS + lead])
    ]
    return "/".join(out)[:_ROUTE_MAX_CHARS]


def parse_path_key(target: str) -> str:
    """The path key of a request target: the path, plus the routing query parameter of a front
    controller, so query-routed endpoints count apart.

    Rule: the query is dropped, except on a front controller (the path is ``/``, ends with ``.php``, or
    its last segment starts with ``index.``), where the first parameter named in
    :data:`ROUTING_QUERY_PARAMS` is kept as ``name=value`` (its value percent-decoded, the first two
    ``/`` segments verbatim, each later segment holding a digit normalised to ``{id}``, 6 segments and
    80 characters at most); the other parameters are dropped.

    Examples: ``/?rest_route=/wp/v2/posts/123&_embed=1`` -> ``/?rest_route=/wp/v2/posts/{id}``;
    ``/wp-cron.php?doing_wp_cron=1`` -> ``/wp-cron.php``; ``/wp-admin/admin-ajax.php?action=heartbeat``
    -> ``/wp-admin/admin-ajax.php?action=heartbeat``; ``/api/items?id=4`` -> ``/api/items``;
    ``/?p=42`` -> ``/``.
    """
    path, sep, query = target.partition("?")
    if not sep or not _is_front_controller(path):
        return path
    for param in query.replace(";", "&").split("&"):
        name, _, value = param.partition("=")
        if name in ROUTING_QUERY_PARAMS:
            return f"{path}?{name}={_route_value(value)}"
    return path


# (code, jt, jf, k); jt/jf are label names or 0 (next instruction)
Op = tuple[int, "str | int", "str | int", int]


MAX_FILTER_PORTS = (
    40  # classic BPF jump offsets are 8-bit: more ports are filtered in Python instead
)


def _ports_check(
    ports: Sequence[int], offset_dport: int, offset_sport: int, indirect: bool
) -> list[Op | str]:
    if not ports or len(ports) > MAX_FILTER_PORTS:
        return []  # every port passes the kernel filter; parse_packet checks the ports
    load = LD_H_IND if indirect else LD_H_ABS
    prog: list[Op | str] = [(load, 0, 0, offset_dport)]
    prog += [(JEQ, "len" + ("4" if indirect else "6"), 0, p) for p in ports]
    prog.append((load, 0, 0, offset_sport))
    prog += [(JEQ, "len" + ("4" if indirect else "6"), 0, p) for p in ports]
    prog.append((RET_K, 0, 0, 0))
    return prog


def _attach_filter(sock: socket.socket, code: bytes) -> None:
    """SO_ATTACH_FILTER of assembled classic BPF ``code`` (8 bytes an instruction) on ``sock``."""
    import ctypes

    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def build_http_filter(ports: Sequence[int], snaplen: int = 512) -> list[Op | str]:
    """The classic BPF program (with string labels) for a SOCK_DGRAM packet socket (data starts at the
    IP header). Returns ``snaplen`` for a payload-bearing TCP segment to/from ``ports``, else 0. With more
    than :data:`MAX_FILTER_PORTS` ports (or none) the port test is left to Python.

    Example: ``build_http_filter([8080])[0] == (0x20, 0, 0, 0xfffff004 - 2**32)`` (load pkttype).
    """
    p: list[Op | str] = [
        (LD_W_ABS, 0, 0, SKF_AD_OFF + SKF_AD_PKTTYPE),  # A = skb->pkt_type
        (JEQ, "drop", 0, PACKET_OUTGOING),  # the outgoing copy of a loopback packet: skip
        (LD_H_ABS, 0, 0, SKF_AD_OFF + SKF_AD_PROTOCOL),  # A = ethertype
        (JEQ, "v4", 0, ETH_P_IP),
        (JEQ, "v6", "drop", ETH_P_IPV6),
        "v4",
        (LD_B_ABS, 0, 0, 9),  # A = ip->protocol
        (JEQ, 0, "drop", socket.IPPROTO_TCP),
        (LD_H_ABS, 0, 0, 6),  # A = flags + fragment offset
        (JSET, "drop", 0, 0x1FFF),  # a non-first fragment has no TCP header
        (LDX_B_MSH, 0, 0, 0),  # X = 4 * (ip->ihl)
    ]
    p += _ports_check(ports, 2, 0, indirect=True)  # dport at X+2, sport at X+0
    p += [
        "len4",
        (LD_B_IND, 0, 0, 12),  # A = tcp data offset byte
        (AND_K, 0, 0, 0xF0),
        (RSH_K, 0, 0, 2),  # A = TCP header length
        (ADD_X, 0, 0, 0),  # A = IP + TCP header length
        (ST, 0, 0, 0),  # M[0] = A
        (LD_H_ABS, 0, 0, 2),  # A = ip->tot_len
        (LDX_MEM, 0, 0, 0),  # X = M[0]
        (SUB_X, 0, 0, 0),  # A = payload length
        (JEQ, "drop", "keep", 0),
        "v6",
        (LD_B_ABS, 0, 0, 6),  # A = ip6->nexthdr (extension headers are not followed)
        (JEQ, 0, "drop", socket.IPPROTO_TCP),
    ]
    p += _ports_check(ports, 42, 40, indirect=False)
    p += [
        "len6",
        (LD_B_ABS, 0, 0, 52),  # A = tcp data offset byte
        (AND_K, 0, 0, 0xF0),
        (RSH_K, 0, 0, 2),  # A = TCP header length
        (ST, 0, 0, 0),  # M[0] = A
        (LD_H_ABS, 0, 0, 4),  # A = ip6->payload_len
        (LDX_MEM, 0, 0, 0),  # X = M[0]
        (SUB_X, 0, 0, 0),  # A = payload length
        (JEQ, "drop", "keep", 0),
        "keep",
        (RET_K, 0, 0, snaplen),
        "drop",
        (RET_K, 0, 0, 0),
    ]
    return p


def assemble_classic(program: Sequence[Op | str]) -> bytes:
    """Encode ``struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}`` entries, resolving labels to
    forward offsets (``target - (index + 1)``).

    Raises:
        ValueError: unknown label, a backward jump, or an offset above 255.
    """
    labels: dict[str, int] = {}
    index = 0
    for item in program:
        if isinstance(item, str):
            labels[item] = index
        else:
            index += 1
    out = bytearray()
    index = 0
    for item in program:
        if isinstance(item, str):
            continue
        code, jt, jf, k = item
        offs = []
        for j in (jt, jf):
            if isinstance(j, str):
                if j not in labels:
                    raise ValueError(f"unknown label {j}")
                off = labels[j] - (index + 1)
                if not 0 <= off <= 255:
                    raise ValueError(f"jump to {j} out of range: {off}")
                offs.append(off)
            else:
                offs.append(j)
        out += struct.pack("=HBBI", code, offs[0], offs[1], k & 0xFFFFFFFF)
        index += 1
    return bytes(out)


def parse_packet(data: bytes, *, at_ns: int, ports: frozenset[int]) -> HttpEvent | None:
    """Decode an IP packet (from the IP header) carrying a TCP segment; an HttpEvent when the payload
    starts with an HTTP/1.x request line (to a port in ``ports``) or status line (from one).

    Example: an IPv4 segment 127.0.0.1:53110 -> 127.0.0.1:8080 with payload ``GET /a?x=1 HTTP/1.1\\r\\n``
    -> ``HttpEvent(kind=REQUEST, method="GET", path="/a", client=127.0.0.1:53110, server=127.0.0.1:8080)``;
    the path is the target's path key (:func:`parse_path_key`: ``/?rest_route=/a`` stays whole).
    """
    if len(data) < 20:
        return None
    version = data[0] >> 4
    if version == 4:
        ihl = (data[0] & 0x0F) * 4
        src: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(data[12:16])
        dst: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(data[16:20])
        tcp = ihl
    elif version == 6 and len(data) >= 40:
        src, dst, tcp = ipaddress.IPv6Address(data[8:24]), ipaddress.IPv6Address(data[24:40]), 40
    else:
        return None
    if len(data) < tcp + 20:
        return None
    sport, dport = struct.unpack_from("!HH", data, tcp)
    payload = data[tcp + (data[tcp + 12] >> 4) * 4 :]
    line = payload.split(b"\r\n", 1)[0]
    if line.startswith(b"HTTP/1.") and sport in ports:
        parts = line.split(b" ", 2)
        if len(parts) >= 2 and parts[1].isdigit():
            return HttpEvent(
                at_ns=at_ns,
                kind=HttpKind.RESPONSE,
                client=Endpoint(dst, dport),
                server=Endpoint(src, sport),
                status=int(parts[1]),
            )
        return None
    if dport in ports:
        parts = line.split(b" ")
        if len(parts) == 3 and parts[0] in METHODS and parts[2].startswith(b"HTTP/1."):
            path = parse_path_key(parts[1].decode("ascii", errors="replace"))
            return HttpEvent(
                at_ns=at_ns,
                kind=HttpKind.REQUEST,
                client=Endpoint(src, sport),
                server=Endpoint(dst, dport),
                method=parts[0].decode(),
                path=path,
            )
    return None


class HttpCapture:
    """Capture HTTP/1.x start lines on ``lo`` of one namespace; :meth:`drain` reads what is queued.

    Args:
        ports: server ports to watch (requests to them, responses from them).
        netns: namespace spec (None: this one).
        snaplen: bytes of each segment passed to Python.

    Raises:
        BackendUnavailable: no CAP_NET_RAW, or the filter was refused.
    """

    def __init__(
        self, ports: Sequence[int], *, netns: str | None = None, snaplen: int = 512
    ) -> None:
        if not ports:
            raise BackendUnavailable("http capture: no listener ports to watch")
        self.ports = frozenset(ports)
        code = assemble_classic(build_http_filter(sorted(self.ports), snaplen))
        fprog_buf = code

        def open_inside() -> socket.socket:
            try:
                # protocol 0: nothing is queued until bind(), which comes after the filter is attached
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
            except (PermissionError, AttributeError) as exc:
                raise BackendUnavailable(
                    f"http capture: AF_PACKET socket: {exc}; needs root (CAP_NET_RAW)"
                ) from exc
            try:
                _attach_filter(sock, fprog_buf)
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                try:  # past net.core.rmem_max (root): a drain every 0.2 s must not overflow
                    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
                except PermissionError:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
                sock.bind(("lo", ETH_P_ALL))  # Python applies htons() to the protocol here
            except OSError as exc:
                sock.close()
                raise BackendUnavailable(f"http capture: cannot set up the socket: {exc}") from exc
            return sock

        self._sock = run_in_netns(resolve_netns(netns), open_inside)
        self._sock.setblocking(False)
        self._snaplen = snaplen
        self.events_read = 0
        self.packets = 0
        """Segments the kernel filter passed to Python."""
        self._dropped = 0

    def set_ports(self, ports: Iterable[int]) -> None:
        """Watch ``ports`` from now on (none: a filter that passes nothing).

        One SO_ATTACH_FILTER on the open socket: the kernel swaps the filter atomically, so no
        segment is lost or passed twice across the change.

        Raises:
            OSError: the kernel refused the filter.
        """
        wanted = frozenset(ports)
        program = build_http_filter(sorted(wanted), self._snaplen) if wanted else [(RET_K, 0, 0, 0)]
        _attach_filter(self._sock, assemble_classic(program))
        self.ports = wanted

    def drain(self, max_packets: int = 1 << 20) -> list[HttpEvent]:
        """Read every queued segment (non-blocking; one wakeup per drain) and return the start lines.

        Capture times come from SO_TIMESTAMPNS (when the kernel queued the segment), so draining late
        does not skew request/response timing.
        """
        out: list[HttpEvent] = []
        for _ in range(max_packets):
            try:
                data, anc, _flags, _addr = self._sock.recvmsg(self._snaplen, 64)
            except BlockingIOError:
                break
            self.packets += 1
            at_ns = 0
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack_from("=qq", value)
                    at_ns = sec * 1_000_000_000 + nsec
            if not at_ns:
                at_ns = time.time_ns()
            ev = parse_packet(data, at_ns=at_ns, ports=self.ports)
            if ev is not None:
                out.append(ev)
        self.events_read += len(out)
        return out

    def drops(self) -> int:
        """Packets the kernel dropped for this socket so far (PACKET_STATISTICS resets on read)."""
        try:
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            self._dropped += struct.unpack("=II", raw)[1]
        except OSError:
            pass
        return self._dropped

    def close(self) -> None:
        """Close the socket. Idempotent."""
        self._sock.close()
