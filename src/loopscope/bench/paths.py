"""The benchmarked paths: echo servers (in a separate process) and one client round trip per path.

Every path answers the same question the same way: the client sends ``size`` bytes, the server sends
``size`` bytes back, and the client times the whole exchange with ``time.perf_counter_ns``. Stream
paths (socketpair, AF_UNIX, TCP) start each connection with a 9-byte hello (mode, size; network order),
then exchange bare payloads like netperf's TCP_RR; the sink mode counts bytes until EOF for the stream
throughput test. UDP echoes datagrams. HTTP uses the stdlib ``http.server`` (threaded, HTTP/1.1,
``disable_nagle_algorithm=True`` unless asked otherwise) and an ``http.client`` client.

The servers live in one child process (:class:`~loopscope.bench.server.ServerProcess`), so that
it can be pinned to a CPU apart from the client (``os.sched_setaffinity``).

Two engines run the same protocol: the Python one (:class:`SmallStreamRoundTrip` and closures) and
the compiled one (:class:`NativeRoundTrip`, :mod:`loopscope.bench.native`), which times the
:data:`NATIVE_PATHS` in C; HTTP always runs in Python.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Callable

from loopscope.analysis.bench.results import Engine
from loopscope.bench.native import NativeLib, PeerClosed, load_native
from loopscope.bench.server import (
    COUNT,
    HELLO,
    MODE_ECHO,
    MODE_SINK,
    SMALL_MESSAGE_BYTES,
    BenchError,
    ServerProcess,
    recv_exact,
)
from loopscope.errors import BackendUnavailable

__all__ = [
    "IO_TIMEOUT_S",
    "NATIVE_PATHS",
    "PATHS",
    "PATH_LABELS",
    "STREAM_PATHS",
    "UDP_MAX_PAYLOAD_BYTES",
    "NativeRoundTrip",
    "SmallStreamRoundTrip",
    "find_host_address",
    "measure_stream_throughput",
    "open_round_trip",
]

PATHS: tuple[str, ...] = (
    "call",
    "socketpair",
    "unix",
    "tcp4",
    "tcp6",
    "tcp-host",
    "udp4",
    "http-keepalive",
    "http-newconn",
)
PATH_LABELS: dict[str, str] = {
    "call": "in-process call",
    "socketpair": "socketpair",
    "unix": "AF_UNIX stream",
    "tcp4": "TCP 127.0.0.1",
    "tcp6": "TCP ::1",
    "tcp-host": "TCP host address",
    "udp4": "UDP 127.0.0.1",
    "http-keepalive": "HTTP/1.1 keep-alive",
    "http-newconn": "HTTP/1.1 new conn",
}
STREAM_PATHS: tuple[str, ...] = ("socketpair", "unix", "tcp4", "tcp6", "tcp-host")
"""Paths that also run the stream throughput test."""
NATIVE_PATHS: tuple[str, ...] = ("call", *STREAM_PATHS, "udp4")
"""Paths the native engine times in C (every size); HTTP always runs on the Python engine."""
UDP_MAX_PAYLOAD_BYTES = 65507
"""Largest UDP/IPv4 payload: 65535 - 20 (IP header) - 8 (UDP header)."""

RoundTrip = Callable[[], None]


def find_host_address() -> str | None:
    """The host's first non-loopback, non-link-local address (IPv4 preferred), or None."""
    import psutil

    v4: list[str] = []
    v6: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = ipaddress.ip_address(a.address.split("%", 1)[0])
            if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
                continue
            (v4 if ip.version == 4 else v6).append(str(ip))
    found = v4 or v6
    return found[0] if found else None


# --------------------------------------------------------------------------------------- client side
def _server_kind(path: str) -> str:
    return "http" if path.startswith("http") else path


IO_TIMEOUT_S = 5.0
"""Longest wait for a connect, a send or a receive: with loopback traffic dropped by a firewall a
round trip would otherwise hang for ever (a connect for ~2 minutes of SYN retries)."""


def _connect_stream(path: str, server: ServerProcess, *, nodelay: bool) -> socket.socket:
    """A connected stream socket with :data:`IO_TIMEOUT_S` on connect, every send and receive.

    Raises:
        OSError: the connect failed or timed out (TimeoutError).
    """
    if path == "socketpair":
        ours, theirs = socket.socketpair()
        server.hand_over(theirs)
        _set_io_timeouts(ours, IO_TIMEOUT_S)
        return ours
    if path == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(IO_TIMEOUT_S)
        try:
            s.connect(server.addresses["unix"])
        except OSError:
            s.close()
            raise
    else:
        host, port = server.addresses[path]
        s = socket.create_connection((host, port), timeout=IO_TIMEOUT_S)
        if nodelay:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(None)
    _set_io_timeouts(s, IO_TIMEOUT_S)
    return s


def _set_recv_timeout(sock: socket.socket, seconds: float) -> None:
    # kernel-side timeout (SO_RCVTIMEO) keeps the socket in blocking mode: no extra poll() per recv
    sec = int(seconds)
    usec = int((seconds - sec) * 1e6)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", sec, usec))


def _set_io_timeouts(sock: socket.socket, seconds: float) -> None:
    """SO_RCVTIMEO and SO_SNDTIMEO: a blocked read or write fails with EAGAIN after ``seconds``."""
    _set_recv_timeout(sock, seconds)
    sec = int(seconds)
    usec = int((seconds - sec) * 1e6)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", sec, usec))


class SmallStreamRoundTrip:
    """One small request/response on a connected stream socket, callable, with an inlined timed loop.

    ``os.write``/``os.read`` on the fd: ~0.3 us less per round trip than ``sendall``/``recv_into``
    (measured). :meth:`timed` runs the round trips inside the measuring loop itself (no Python call
    per round trip) and reads the clock once per round trip (see
    :func:`loopscope.bench.runner.measure_round_trips`).
    """

    __slots__ = ("fd", "path", "payload", "size", "sock")

    def __init__(self, path: str, sock: socket.socket, payload: bytes) -> None:
        self.path = path
        self.sock = sock
        self.fd = sock.fileno()
        self.payload = payload
        self.size = len(payload)

    def __call__(self) -> None:
        sent = os.write(self.fd, self.payload)
        if sent != self.size:
            self.sock.sendall(self.payload[sent:])
        got = len(os.read(self.fd, self.size))
        if got != self.size:
            self._finish(got)

    def _finish(self, got: int) -> None:
        """Read the rest of a response that came in pieces (also got == 0: the next read tells)."""
        while got < self.size:
            more = len(os.read(self.fd, self.size - got))
            if more == 0:
                raise BenchError(f"{self.path}: server closed the connection")
            got += more

    def timed(self, count: int, end_ns: int) -> list[int]:
        """``count`` round trips (fewer once ``perf_counter_ns`` passes ``end_ns``), each one's ns.

        Sample i is the time between two consecutive clock reads: round trip i plus the loop's own
        bookkeeping (one list append, two compares), the same fixed cost on every path.
        """
        fd, payload, size = self.fd, self.payload, self.size
        write, read, pc = os.write, os.read, time.perf_counter_ns
        out: list[int] = []
        append = out.append
        prev = pc()
        for _ in range(count):
            sent = write(fd, payload)
            if sent != size:  # a full socket buffer: rare for messages up to 64 KiB
                self.sock.sendall(payload[sent:])
            got = len(read(fd, size))
            if got != size:
                self._finish(got)
            now = pc()
            append(now - prev)
            prev = now
            if now > end_ns:
                break
        return out


class NativeRoundTrip:
    """Round trips timed by the compiled loop (:class:`~loopscope.bench.native.NativeLib`), callable.

    A call runs one untimed round trip (the warm-up); :meth:`timed` runs the whole measured loop in
    C with one ``CLOCK_MONOTONIC`` read per round trip, the method of
    :meth:`SmallStreamRoundTrip.timed` without the interpreter.
    """

    __slots__ = ("_timed", "path")

    def __init__(self, path: str, timed: Callable[[int, int], list[int]]) -> None:
        self.path = path
        self._timed = timed

    def __call__(self) -> None:
        self.timed(1, time.perf_counter_ns() + int(IO_TIMEOUT_S * 1e9))

    def timed(self, count: int, end_ns: int) -> list[int]:
        """``count`` round trips (fewer once ``perf_counter_ns`` passes ``end_ns``), each one's ns.

        Raises:
            BenchError: the server closed the connection.
            OSError: a send or receive failed or timed out (:data:`IO_TIMEOUT_S`).
        """
        try:
            return self._timed(count, end_ns)
        except PeerClosed as exc:
            raise BenchError(f"{self.path}: server closed the connection") from exc


def _open_native(
    lib: NativeLib, path: str, size_bytes: int, server: ServerProcess
) -> tuple[RoundTrip, Callable[[], None]]:
    """A :class:`NativeRoundTrip` on a connected socket of ``path`` (a stream or UDP path)."""
    payload = b"q" * size_bytes
    if path == "udp4":
        sock = _connect_udp(server)
    else:
        sock = _connect_stream(path, server, nodelay=True)
        try:
            sock.sendall(HELLO.pack(MODE_ECHO, size_bytes))
        except OSError:
            sock.close()
            raise
    fd = sock.fileno()

    def timed(count: int, end_ns: int) -> list[int]:
        return lib.rr_timed(fd, payload, count, end_ns)

    return NativeRoundTrip(path, timed), sock.close


def _connect_udp(server: ServerProcess) -> socket.socket:
    """A UDP socket connected to the server's echo, 1 MiB buffers, :data:`IO_TIMEOUT_S` timeouts."""
    us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        us.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        us.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        _set_io_timeouts(us, IO_TIMEOUT_S)
        us.connect(server.addresses["udp4"])
    except OSError:
        us.close()
        raise
    return us


def open_round_trip(
    path: str,
    size_bytes: int,
    server: ServerProcess | None,
    *,
    engine: Engine = Engine.PYTHON,
) -> tuple[RoundTrip, Callable[[], None]]:
    """One request/response of ``size_bytes`` each way on ``path``, as a callable, and its closer.

    Args:
        path: one of :data:`PATHS`.
        size_bytes: payload each way.
        server: the echo servers (None only for ``call``).
        engine: NATIVE gives a :class:`NativeRoundTrip` for the :data:`NATIVE_PATHS` (HTTP stays
            Python); AUTO means NATIVE when it compiles here; PYTHON the interpreter's loops.

    Raises:
        BenchError: unknown path, no server for a socket path, UDP payload too large, peer closed.
        BackendUnavailable: NATIVE asked for and the engine does not compile or load here.
    """
    payload = b"q" * size_bytes
    if path in NATIVE_PATHS and engine is not Engine.PYTHON:
        if path == "udp4" and size_bytes > UDP_MAX_PAYLOAD_BYTES:
            raise BenchError(f"UDP payload {size_bytes} > {UDP_MAX_PAYLOAD_BYTES} bytes")
        lib = _native_or_none(engine)
        if lib is not None and path == "call":
            return NativeRoundTrip(path, lambda n, end: lib.call_timed(size_bytes, n, end)), _nop
        if lib is not None:
            if server is None:
                raise BenchError(f"path {path!r} needs a server")
            return _open_native(lib, path, size_bytes, server)
    if path == "call":
        response = b"r" * size_bytes

        def handler(request: bytes) -> bytes:
            return response

        def call_rt() -> None:
            handler(payload)

        return call_rt, _nop
    if server is None:
        raise BenchError(f"path {path!r} needs a server")
    if path in STREAM_PATHS:
        sock = _connect_stream(path, server, nodelay=True)
        sock.sendall(HELLO.pack(MODE_ECHO, size_bytes))
        if size_bytes <= SMALL_MESSAGE_BYTES:
            return SmallStreamRoundTrip(path, sock, payload), sock.close
        view = memoryview(bytearray(size_bytes))
        sendall = sock.sendall
        recv_into = sock.recv_into

        def stream_rt() -> None:
            sendall(payload)
            got = recv_into(view)
            if got != size_bytes and not (got and recv_exact(sock, view[got:], size_bytes - got)):
                raise BenchError(f"{path}: server closed the connection")

        return stream_rt, sock.close
    if path == "udp4":
        if size_bytes > UDP_MAX_PAYLOAD_BYTES:
            raise BenchError(f"UDP payload {size_bytes} > {UDP_MAX_PAYLOAD_BYTES} bytes")
        us = _connect_udp(server)
        buf = bytearray(max(size_bytes, 1))

        def udp_rt() -> None:
            us.send(payload)
            us.recv_into(buf)

        return udp_rt, us.close
    if path in ("http-keepalive", "http-newconn"):
        host, port = server.addresses["http"]
        if path == "http-keepalive":
            conn = http.client.HTTPConnection(host, port, timeout=IO_TIMEOUT_S)

            def keepalive_rt() -> None:
                conn.request("POST", "/echo", body=payload)
                conn.getresponse().read()

            return keepalive_rt, conn.close

        def newconn_rt() -> None:
            c = http.client.HTTPConnection(host, port, timeout=IO_TIMEOUT_S)
            c.request("POST", "/echo", body=payload, headers={"Connection": "close"})
            c.getresponse().read()
            c.close()

        return newconn_rt, lambda: None
    raise BenchError(f"unknown path {path!r}; known: {', '.join(PATHS)}")


def _nop() -> None:
    return None


def _native_or_none(engine: Engine) -> NativeLib | None:
    """The compiled engine for NATIVE (raising when absent) or AUTO (None when absent)."""
    if engine is Engine.NATIVE:
        return load_native()
    try:
        return load_native()
    except BackendUnavailable:
        return None


def measure_stream_throughput(
    path: str,
    server: ServerProcess,
    *,
    duration_s: float,
    max_bytes: int,
    chunk_bytes: int = 128 * 1024,
) -> tuple[int, int]:
    """Send ``chunk_bytes`` writes for ``duration_s`` (or ``max_bytes``) and wait for the receiver.

    Returns:
        (bytes the server received, ns from the first send until the server's byte count arrived).

    Raises:
        BenchError: the server closed early or reported a different byte count.
    """
    sock = _connect_stream(path, server, nodelay=False)  # like iperf3: Nagle on for bulk
    with sock:
        sock.sendall(HELLO.pack(MODE_SINK, 0))
        chunk = memoryview(bytearray(chunk_bytes))
        pc = time.perf_counter_ns
        sent = 0
        t0 = pc()
        end = t0 + int(duration_s * 1e9)
        while sent < max_bytes and pc() < end:
            sock.sendall(chunk)
            sent += chunk_bytes
        sock.shutdown(socket.SHUT_WR)
        reply = memoryview(bytearray(COUNT.size))
        if not recv_exact(sock, reply, COUNT.size):
            raise BenchError(f"{path}: sink closed without a byte count")
        elapsed = pc() - t0
    (received,) = COUNT.unpack(reply)
    if received != sent:
        raise BenchError(f"{path}: sent {sent} bytes, server counted {received}")
    return received, elapsed
