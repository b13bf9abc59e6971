"""sock_diag destroy multicast (what ``ss -E`` uses): every TCP socket the kernel frees, unprivileged.

A NETLINK_SOCK_DIAG socket joins the groups SKNLGRP_INET_TCP_DESTROY (1) and SKNLGRP_INET6_TCP_DESTROY
(3) with ``setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP)``; the kernel then sends one
SOCK_DIAG_BY_FAMILY message (an ``inet_diag_msg`` with INET_DIAG_INFO = struct tcp_info) per destroyed
socket of that network namespace (net/core/sock_diag.c ``sock_diag_broadcast_destroy``). uid and inode
are 0 in these messages, and a client that closed with RST loses its remote address and port.

Sources of truth: include/uapi/linux/sock_diag.h (groups), net/ipv4/inet_diag.c.
"""

from __future__ import annotations

import errno as errno_mod
import socket
import threading
import time
from collections.abc import Iterable

from loopscope.backends.linux.netlink import KernelTransport, parse_messages
from loopscope.backends.linux.netns import resolve_netns, run_in_netns
from loopscope.backends.linux.sock_diag import (
    NETLINK_SOCK_DIAG,
    SOCK_DIAG_BY_FAMILY,
    parse_inet_diag_msg,
)
from loopscope.errors import BackendUnavailable, NetlinkError
from loopscope.model import NetnsId, Proto
from loopscope.model.events import CloseEvent

__all__ = ["SKNLGRP_INET6_TCP_DESTROY", "SKNLGRP_INET_TCP_DESTROY", "DestroySubscription", "parse_destroy_datagram"]

SKNLGRP_INET_TCP_DESTROY = 1
SKNLGRP_INET6_TCP_DESTROY = 3
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
SO_RCVBUFFORCE = 33


def parse_destroy_datagram(data: bytes, *, netns: NetnsId, at_ns: int) -> list[CloseEvent]:
    """Decode one datagram of destroy messages into CloseEvents (non-inet_diag messages are skipped).

    Example: a message for the client end 127.0.0.1:53110 -> 127.0.0.1:8080, cookie 67 ->
    ``[CloseEvent(local=127.0.0.1:53110, remote=127.0.0.1:8080, cookie=67, tcp_info=TcpInfo(...))]``.

    Raises:
        ParseError: malformed framing or message.
    """
    out: list[CloseEvent] = []
    for msg in parse_messages(data):
        if msg.type != SOCK_DIAG_BY_FAMILY:
            continue
        rec = parse_inet_diag_msg(msg.payload, proto=Proto.TCP, netns=netns)
        out.append(CloseEvent(at_ns=at_ns, family=rec.family, local=rec.local, remote=rec.remote,
                              cookie=rec.cookie or 0, netns=netns, tcp_info=rec.tcp_info))
    return out


class DestroySubscription:
    """Subscribe to TCP destroy events of one network namespace; a thread reads them into a buffer.

    Args:
        netns: namespace spec (None: this one; NAME, PID or path as for ``scan --netns``).
        groups: multicast groups to join (IPv4 and IPv6 TCP by default).
        rcvbuf_bytes: receive buffer; forced past rmem_max when root (SO_RCVBUFFORCE).

    Raises:
        BackendUnavailable: the socket cannot be created or the group cannot be joined.
        UsageError / NetnsError: the namespace is unknown or cannot be entered.
    """

    def __init__(self, netns: str | None = None, *,
                 groups: Iterable[int] = (SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY),
                 rcvbuf_bytes: int = 8 << 20) -> None:
        target = resolve_netns(netns)
        self.netns = target.id
        self.label = target.label
        wanted = tuple(groups)

        def open_inside() -> KernelTransport:
            transport = KernelTransport(NETLINK_SOCK_DIAG)
            try:
                try:
                    transport.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf_bytes)
                except PermissionError:
                    transport.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
                for group in wanted:
                    transport.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
            except OSError as exc:
                transport.close()
                raise BackendUnavailable(f"sock_diag destroy events: cannot join group: {exc}") from exc
            return transport

        self._transport = run_in_netns(target, open_inside)
        self._transport.sock.settimeout(0.2)
        self._lock = threading.Lock()
        self._buffer: list[CloseEvent] = []
        self.overflows = 0
        self.events_read = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"destroy-{self.label}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sock = self._transport.sock
        while not self._stop.is_set():
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError as exc:
                if exc.errno == errno_mod.ENOBUFS:
                    self.overflows += 1  # the kernel dropped messages: a stated gap
                    continue
                if self._stop.is_set():
                    return
                self.error = NetlinkError(exc.errno or errno_mod.EIO, "destroy events recv")
                return
            try:
                events = parse_destroy_datagram(data, netns=self.netns, at_ns=time.time_ns())
            except Exception as exc:  # noqa: BLE001 - kept and re-raised by drain() in the caller
                self.error = exc
                return
            with self._lock:
                self._buffer.extend(events)

    def drain(self) -> list[CloseEvent]:
        """Events received since the last call.

        Raises:
            LoopscopeError: the reader thread failed (re-raised here).
        """
        with self._lock:
            out, self._buffer = self._buffer, []
        self.events_read += len(out)
        if self.error is not None and not out:
            raise self.error
        return out

    def close(self) -> None:
        """Stop the reader and close the socket. Idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._transport.close()

    def __enter__(self) -> DestroySubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
