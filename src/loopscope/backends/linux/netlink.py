"""Raw netlink: a small transport (kernel socket or recorded replay) and message/attribute framing.

Wire format (include/uapi/linux/netlink.h): every message starts with ``struct nlmsghdr``
(``len u32, type u16, flags u16, seq u32, pid u32``, 16 bytes, native byte order), padded to 4 bytes.
Attributes (``struct rtattr`` / ``struct nlattr``) are ``len u16, type u16`` then the payload, padded to 4.

Kernel names (nlmsg_*, NLM_F_*) stay in this module and in the message-specific wire modules.
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from loopscope.errors import BackendUnavailable, NetlinkError, ParseError

__all__ = [
    "NLMSG_DONE",
    "NLMSG_ERROR",
    "NLMSG_HDR",
    "NLMSG_NOOP",
    "NLM_F_DUMP",
    "NLM_F_MULTI",
    "NLM_F_REQUEST",
    "KernelTransport",
    "NetlinkMessage",
    "RecordingTransport",
    "ReplayTransport",
    "Transport",
    "dump",
    "pack_message",
    "parse_attributes",
    "parse_messages",
]

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH

NLMSG_HDR = struct.Struct("=IHHII")
_NLA_HDR = struct.Struct("=HH")
_RECV_BYTES = 1 << 20  # one recv() gets up to 1 MiB of dump messages


def _align4(n: int) -> int:
    return (n + 3) & ~3


@dataclass(frozen=True, slots=True)
class NetlinkMessage:
    """One netlink message: its header fields and its payload (bytes after the 16-byte header)."""

    type: int
    """nlmsg_type."""
    flags: int
    """nlmsg_flags."""
    seq: int
    """nlmsg_seq."""
    payload: bytes
    """Body, without padding beyond nlmsg_len."""


class Transport(Protocol):
    """Something that sends one request and returns reply datagrams (kernel socket or replay)."""

    def send(self, data: bytes) -> None:
        """Send one request datagram."""

    def recv(self) -> bytes:
        """Receive one datagram (several messages may be packed in it)."""

    def close(self) -> None:
        """Release the transport."""


class KernelTransport:
    """A real AF_NETLINK socket of the given protocol, in the calling thread's network namespace.

    Args:
        protocol: e.g. ``socket.NETLINK_SOCK_DIAG`` (4) or ``socket.NETLINK_ROUTE`` (0).
        groups: multicast group bitmask to bind to (0 for request/reply use).
        rcvbuf_bytes: SO_RCVBUF to ask for.

    Raises:
        BackendUnavailable: the socket cannot be created (not Linux, or the protocol is not built in).
    """

    def __init__(self, protocol: int, *, groups: int = 0, rcvbuf_bytes: int = 1 << 21) -> None:
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        except (OSError, AttributeError) as exc:
            raise BackendUnavailable(f"netlink protocol {protocol} unavailable: {exc}") from exc
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
            self.sock.bind((0, groups))
        except OSError as exc:
            self.sock.close()
            raise BackendUnavailable(f"netlink bind failed: {exc}") from exc

    def send(self, data: bytes) -> None:
        """Send to the kernel (pid 0)."""
        self.sock.sendto(data, (0, 0))

    def recv(self) -> bytes:
        """Blocking recv of one datagram.

        Raises:
            NetlinkError: the receive buffer overflowed (ENOBUFS) or another socket error.
        """
        try:
            return self.sock.recv(_RECV_BYTES)
        except OSError as exc:
            raise NetlinkError(exc.errno or errno_mod.EIO, "recv") from exc

    def fileno(self) -> int:
        """The socket fd, for select/poll."""
        return self.sock.fileno()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> KernelTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReplayTransport:
    """Plays back recorded reply datagrams, for tests and offline parsing.

    Args:
        datagrams: the reply datagrams, in order, as recorded by :class:`RecordingTransport`.

    Sent requests are kept in ``self.sent``. Receiving past the end raises ``ParseError``
    (a truncated recording: the dump never ended with NLMSG_DONE).
    """

    def __init__(self, datagrams: Sequence[bytes]) -> None:
        self._datagrams = list(datagrams)
        self._next = 0
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        """Record the request."""
        self.sent.append(data)

    def recv(self) -> bytes:
        """Next recorded datagram.

        Raises:
            ParseError: no datagram left.
        """
        if self._next >= len(self._datagrams):
            raise ParseError("recording ended before NLMSG_DONE", path="netlink")
        data = self._datagrams[self._next]
        self._next += 1
        return data

    def close(self) -> None:
        """Nothing to release."""


class RecordingTransport:
    """Wraps a transport and keeps every datagram received, to write fixtures."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.received: list[bytes] = []

    def send(self, data: bytes) -> None:
        """Forward."""
        self.inner.send(data)

    def recv(self) -> bytes:
        """Forward and keep a copy."""
        data = self.inner.recv()
        self.received.append(data)
        return data

    def close(self) -> None:
        """Close the inner transport."""
        self.inner.close()


def pack_message(msg_type: int, flags: int, seq: int, payload: bytes) -> bytes:
    """Frame ``payload`` with an nlmsghdr (pid 0), padded to 4 bytes.

    Example: ``pack_message(20, 0x301, 1, b"")`` -> 16 bytes ``10 00 00 00 14 00 01 03 01 00 00 00 00 00 00 00``.
    """
    length = NLMSG_HDR.size + len(payload)
    return (
        NLMSG_HDR.pack(length, msg_type, flags, seq, 0)
        + payload
        + b"\0" * (_align4(length) - length)
    )


def _frames(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """``(type, flags, seq, body)`` of each message of one datagram; shared by :func:`parse_messages`
    and the :func:`dump` hot path (no per-message object).

    Raises:
        ParseError: a header is truncated or its nlmsg_len runs past the datagram or is < 16.
    """
    unpack = NLMSG_HDR.unpack_from
    hdr = NLMSG_HDR.size
    offset = 0
    size = len(data)
    while offset + hdr <= size:
        length, msg_type, flags, seq, _pid = unpack(data, offset)
        if length < hdr or offset + length > size:
            raise ParseError(
                f"bad nlmsg_len {length} at offset {offset} of {size}",
                path="netlink",
                lineno=offset,
                line=data[offset : offset + 16].hex(),
            )
        yield msg_type, flags, seq, data[offset + hdr : offset + length]
        offset += (length + 3) & ~3
    if offset < size and any(data[offset:]):
        raise ParseError(
            f"{size - offset} trailing bytes after last message",
            path="netlink",
            lineno=offset,
            line=data[offset : offset + 16].hex(),
        )


def parse_messages(data: bytes) -> Iterator[NetlinkMessage]:
    """Split one datagram into messages.

    Raises:
        ParseError: a header is truncated or its nlmsg_len runs past the datagram or is < 16.
    """
    for msg_type, flags, seq, body in _frames(data):
        yield NetlinkMessage(msg_type, flags, seq, bytes(body))


def parse_attributes(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Parse a run of netlink attributes starting at ``offset``: ``{type: payload}`` (last one wins).

    The NLA_F_NESTED and NLA_F_NET_BYTEORDER bits are masked off the type.

    Example: ``parse_attributes(bytes.fromhex("0500 0a00 06 000000"))`` -> ``{10: b"\\x06"}``.

    Raises:
        ParseError: an attribute length is < 4 or runs past the data.
    """
    attrs: dict[int, bytes] = {}
    size = len(data)
    while offset + _NLA_HDR.size <= size:
        length, attr_type = _NLA_HDR.unpack_from(data, offset)
        if length < _NLA_HDR.size or offset + length > size:
            raise ParseError(
                f"bad attribute length {length} at offset {offset} of {size}",
                path="netlink",
                lineno=offset,
                line=data[offset : offset + 8].hex(),
            )
        attrs[attr_type & 0x3FFF] = data[offset + _NLA_HDR.size : offset + length]
        offset += _align4(length)
    return attrs


def dump(
    transport: Transport, msg_type: int, payload: bytes, *, seq: int = 1, what: str = ""
) -> Iterator[bytes]:
    """Send one NLM_F_DUMP request and yield each reply payload until NLMSG_DONE.

    Args:
        transport: kernel or replay transport.
        msg_type: request type, e.g. SOCK_DIAG_BY_FAMILY (20) or RTM_GETADDR (22).
        payload: the request body.
        seq: sequence number; replies with another seq are skipped.
        what: name for error messages.

    Yields:
        The payload of every reply message of the dump (headers stripped).

    Raises:
        NetlinkError: the kernel answered NLMSG_ERROR with a non-zero error.
        ParseError: malformed framing.
    """
    transport.send(pack_message(msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, payload))
    while True:
        for mtype, _flags, mseq, body in _frames(transport.recv()):
            if mseq != seq:
                continue
            if mtype == NLMSG_DONE:
                return
            if mtype == NLMSG_ERROR:
                if len(body) < 4:
                    raise ParseError("short NLMSG_ERROR", path="netlink")
                (err,) = struct.unpack_from("=i", body)
                if err == 0:
                    continue
                raise NetlinkError(-err, what or f"dump type {msg_type}")
            if mtype == NLMSG_NOOP:
                continue
            yield body


def is_linux() -> bool:
    """True on Linux (where AF_NETLINK exists)."""
    return hasattr(socket, "AF_NETLINK") and os.uname().sysname == "Linux"
