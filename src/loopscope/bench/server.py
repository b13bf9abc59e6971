"""Echo servers for the path benchmarks, run in a child process (``python -m loopscope.bench.server``).

Wire protocol of the stream servers (socketpair, AF_UNIX, TCP): each connection starts with a 9-byte
hello ``struct.pack("!BQ", mode, size)``. Mode 1 (echo): the server then reads ``size`` bytes and
answers ``size`` bytes, again and again, like netperf's TCP_RR. Mode 2 (sink): the server reads until
EOF and answers the byte count as ``!Q``. UDP echoes each datagram. HTTP is the stdlib
``ThreadingHTTPServer`` (HTTP/1.1; POST echoes a body of the same size, GET answers ``ok``).

All servers of one run live in one child process, so that it can be pinned to its own CPU. The child
gets its configuration as one JSON argument, prints one JSON line with its addresses (or an error) on
stdout, and exits when its stdin reaches EOF (the parent closed it or died).

With the native engine (:mod:`loopscope.bench.native`) the parent builds ``rr.c`` and passes the
library's path; the child loads it and runs the echo loops in C (``ls_echo`` per stream connection,
``ls_udp_echo`` for UDP), each in its own thread (ctypes releases the GIL). HTTP stays Python.
"""

from __future__ import annotations

import http.server
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any

from loopscope.analysis.bench.results import Engine
from loopscope.bench.native import NativeLib, load_native
from loopscope.errors import BackendUnavailable, LoopscopeError

__all__ = [
    "COUNT",
    "HELLO",
    "MAX_MESSAGE_BYTES",
    "MODE_ECHO",
    "MODE_SINK",
    "SINK_BUFFER_BYTES",
    "SMALL_MESSAGE_BYTES",
    "BenchError",
    "ServerProcess",
    "main",
    "pin_current_process",
    "recv_exact",
]

HELLO = struct.Struct("!BQ")
MODE_ECHO = 1
MODE_SINK = 2
COUNT = struct.Struct("!Q")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest echo size a hello may ask for; anything else closes the connection."""
SMALL_MESSAGE_BYTES = 64 * 1024
"""Up to this size both ends use ``os.read``/``os.write`` on the fd (cheaper calls, measured ~0.3 us
per round trip); above it ``recv_into``/``sendall`` into preallocated buffers (no big allocations)."""
SINK_BUFFER_BYTES = 128 * 1024
"""Receive buffer of the throughput sink (iperf3 reads in its send size, 128 KiB by default)."""


class BenchError(LoopscopeError):
    """A benchmark could not run (server did not start, peer closed, CPU not available)."""


def pin_current_process(cpu: int | None) -> None:
    """Pin the calling process to one CPU (no-op for None).

    Raises:
        BenchError: the CPU is not available to this process.
    """
    if cpu is None:
        return
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        raise BenchError(f"cannot pin to CPU {cpu}: {exc}") from exc


def recv_exact(sock: socket.socket, view: memoryview, n: int) -> bool:
    got = 0
    while got < n:
        r = sock.recv_into(view[got:n], n - got)
        if r == 0:
            return False
        got += r
    return True


def _serve_stream(sock: socket.socket) -> None:
    """Serve one client; a client that goes away mid-message (reset, Ctrl-C) just ends it."""
    try:
        _serve_one(sock)
    except OSError:
        sock.close()


def _serve_one(sock: socket.socket) -> None:
    with sock:
        tcp = sock.family != socket.AF_UNIX
        hello = memoryview(bytearray(HELLO.size))
        if not recv_exact(sock, hello, HELLO.size):
            return
        mode, size = HELLO.unpack(hello)
        if mode == MODE_SINK and size == 0:
            _sink(sock)
            return
        if mode != MODE_ECHO or not 1 <= size <= MAX_MESSAGE_BYTES:
            return  # not our client (a port scanner, an HTTP probe): just close
        if tcp:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _echo(sock, size)


def _sink(sock: socket.socket) -> None:
    """Count bytes until EOF, answer the count (the throughput test's receiver)."""
    buf = memoryview(bytearray(SINK_BUFFER_BYTES))
    recv_into = sock.recv_into
    total = 0
    while r := recv_into(buf):
        total += r
    sock.sendall(COUNT.pack(total))


_NATIVE: list[NativeLib] = []
"""The compiled engine of this server process, when the parent asked for it and it loaded."""


def _echo(sock: socket.socket, size: int) -> None:
    """Read ``size`` bytes, answer ``size`` bytes, until EOF (hot loop: no per-message allocation
    when a message arrives in one read); in C (``ls_echo``) with the native engine."""
    if _NATIVE:
        _NATIVE[0].echo(sock.fileno(), size)  # OSError (a reset) ends the connection, as below
        return
    response = b"r" * size
    if size <= SMALL_MESSAGE_BYTES:
        _echo_small(sock.fileno(), size, response)
        return
    view = memoryview(bytearray(size))
    recv_into = sock.recv_into
    sendall = sock.sendall
    while True:
        got = recv_into(view)
        if got == 0:
            return
        while got < size:
            r = recv_into(view[got:])
            if r == 0:
                return
            got += r
        sendall(response)


def _echo_small(fd: int, size: int, response: bytes) -> None:
    read, write = os.read, os.write
    while True:
        got = len(read(fd, size))
        if got == 0:
            return
        while got < size:
            more = len(read(fd, size - got))
            if more == 0:
                return
            got += more
        sent = write(fd, response)
        while sent < size:
            sent += write(fd, response[sent:])


def _accept_loop(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve_stream, args=(conn,), daemon=True).start()


def _fd_loop(listener: socket.socket) -> None:
    while True:
        control, _ = listener.accept()
        with control:
            while True:
                _msg, fds, _flags, _addr = socket.recv_fds(control, 16, 4)
                if not fds:
                    break
                for fd in fds:
                    s = socket.socket(fileno=fd)
                    threading.Thread(target=_serve_stream, args=(s,), daemon=True).start()


def _udp_loop(sock: socket.socket) -> None:
    if _NATIVE:
        _NATIVE[0].udp_echo(sock.fileno())
        return
    buf = memoryview(bytearray(65536))
    while True:
        n, addr = sock.recvfrom_into(buf)
        sock.sendto(buf[:n], addr)


def _http_handler(nodelay: bool, single_send: bool) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = nodelay

        def _reply(self, body: bytes) -> None:
            if single_send:
                head = (
                    f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                self.wfile.write(head + body)
                return
            # the stdlib way: headers flushed by end_headers(), then the body: two sends
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length", "0"))
            self._reply(b"r" * len(self.rfile.read(n)))

        def do_GET(self) -> None:
            self._reply(b"ok\n")

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    """Child entry point: ``python -m loopscope.bench.server '<json config>'``.

    Config keys: kinds (list), cpu (int|None), host_address (str|None), http_nodelay (bool),
    http_single_send (bool), unix_dir (str), native_lib (str|None: the compiled engine built by
    the parent, :func:`loopscope.bench.native.load_native`; None for the Python echo loops).
    The ready line carries ``engine`` (``native`` or ``python``) and ``engine_reason``.
    """
    cfg = json.loads((argv if argv is not None else sys.argv[1:])[0])
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when we stop (it
    # closes our stdin), so a child traceback never lands on the user's screen.
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    try:
        pin_current_process(cfg.get("cpu"))
        addresses, loops, errors = _open_servers(
            cfg["kinds"],
            cfg.get("host_address"),
            bool(cfg.get("http_nodelay", True)),
            bool(cfg.get("http_single_send", False)),
            cfg["unix_dir"],
        )
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 2
    engine, engine_reason = _load_engine(cfg.get("native_lib"))
    for fn, s in loops:
        threading.Thread(target=fn, args=(s,), daemon=True).start()
    ready = {"ready": addresses, "errors": errors, "engine": engine, "engine_reason": engine_reason}
    print(json.dumps(ready), flush=True)
    sys.stdin.buffer.read()  # until the parent closes our stdin or dies
    return 0


def _load_engine(native_lib: str | None) -> tuple[str, str | None]:
    """Load the parent's compiled engine into :data:`_NATIVE`: (engine name, why not native)."""
    if native_lib is None:
        return Engine.PYTHON.value, None
    try:
        _NATIVE.append(load_native(native_lib))
    except BackendUnavailable as exc:
        return Engine.PYTHON.value, str(exc)
    return Engine.NATIVE.value, None


_Loop = tuple[Callable[[socket.socket], None], socket.socket]


def _open_servers(
    kinds: Sequence[str],
    host_address: str | None,
    http_nodelay: bool,
    http_single_send: bool,
    unix_dir: str,
) -> tuple[dict[str, Any], list[_Loop], dict[str, str]]:
    """Open a server of each kind; a kind that cannot open here (no 127.0.0.1, IPv6 off) is left
    out with its reason in the third item, the others still open."""
    addresses: dict[str, Any] = {}
    loops: list[_Loop] = []
    errors: dict[str, str] = {}
    for kind in kinds:
        try:
            _open_server(
                kind, host_address, http_nodelay, http_single_send, unix_dir, addresses, loops
            )
        except OSError as exc:
            errors[kind] = f"cannot serve {kind} here: {exc.strerror or exc}"
    return addresses, loops, errors


def _open_server(
    kind: str,
    host_address: str | None,
    http_nodelay: bool,
    http_single_send: bool,
    unix_dir: str,
    addresses: dict[str, Any],
    loops: list[_Loop],
) -> None:
    if kind in ("tcp4", "tcp6", "tcp-host"):
        host = {"tcp4": "127.0.0.1", "tcp6": "::1"}.get(kind, host_address or "")
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, 0))
        ls.listen(64)
        addresses[kind] = (host, ls.getsockname()[1])
        loops.append((_accept_loop, ls))
    elif kind == "unix":
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = os.path.join(unix_dir, "echo.sock")
        ls.bind(path)
        ls.listen(64)
        addresses[kind] = path
        loops.append((_accept_loop, ls))
    elif kind == "socketpair":
        # the client makes each socketpair and hands one end over this control socket
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = os.path.join(unix_dir, "fdpass.sock")
        ls.bind(path)
        ls.listen(4)
        addresses[kind] = path
        loops.append((_fd_loop, ls))
    elif kind == "udp4":
        us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        us.bind(("127.0.0.1", 0))
        addresses[kind] = ("127.0.0.1", us.getsockname()[1])
        loops.append((_udp_loop, us))
    elif kind == "http":
        handler = _http_handler(http_nodelay, http_single_send)
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        srv.daemon_threads = True
        addresses[kind] = ("127.0.0.1", srv.server_address[1])
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    else:
        raise BenchError(f"unknown server kind {kind!r}")


class ServerProcess:
    """The echo servers for ``kinds`` in one child process; a context manager.

    Args:
        kinds: server kinds among ``socketpair unix tcp4 tcp6 tcp-host udp4 http``.
        cpu: CPU to pin the server process to, None for no pinning.
        host_address: address for ``tcp-host`` (see :func:`find_host_address`).
        http_nodelay: TCP_NODELAY on the HTTP server's sockets.
        http_single_send: write each HTTP response in one send instead of the stdlib's two.
        engine: the echo loops: NATIVE in C (``ls_echo``, ``ls_udp_echo``; the library is built
            here and loaded by the child), AUTO native when it builds, PYTHON the interpreter.
            HTTP is always the stdlib server.
        start_timeout_s: how long to wait for the child to listen.

    Attributes:
        addresses: kind -> (host, port) for TCP/UDP/HTTP, a socket path for unix/socketpair.
        errors: kind -> why it could not be served here (IPv6 off, no 127.0.0.1); not in addresses.
        pid: the child's pid.
        engine: the engine of the echo loops that runs (NATIVE or PYTHON).
        engine_reason: why PYTHON runs although native was asked for or possible; else None.

    Raises:
        BenchError: the child failed to start or to bind (message from the child).
        BackendUnavailable: NATIVE asked for and the engine does not build here.
    """

    def __init__(
        self,
        kinds: Sequence[str],
        *,
        cpu: int | None = None,
        host_address: str | None = None,
        http_nodelay: bool = True,
        http_single_send: bool = False,
        engine: Engine = Engine.PYTHON,
        start_timeout_s: float = 15.0,
    ) -> None:
        self._kinds = tuple(kinds)
        self._cpu = cpu
        self._host_address = host_address
        self._http = (http_nodelay, http_single_send)
        self._timeout_s = start_timeout_s
        self._engine = engine
        self.engine = Engine.PYTHON
        self.engine_reason: str | None = None
        self.addresses: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._control: socket.socket | None = None

    def __enter__(self) -> ServerProcess:
        native_lib: str | None = None
        if self._engine is not Engine.PYTHON:
            try:
                native_lib = load_native().path
            except BackendUnavailable as exc:
                if self._engine is Engine.NATIVE:
                    raise
                self.engine_reason = f"native unavailable: {exc}"
        self._tmp = tempfile.TemporaryDirectory(prefix="loopscope-bench-")
        cfg = {
            "kinds": list(self._kinds),
            "cpu": self._cpu,
            "host_address": self._host_address,
            "http_nodelay": self._http[0],
            "http_single_send": self._http[1],
            "unix_dir": self._tmp.name,
            "native_lib": native_lib,
        }
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "loopscope.bench.server", json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.pid = self._proc.pid
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], self._timeout_s)
        line = self._proc.stdout.readline() if ready else b""
        try:
            msg = json.loads(line) if line else {}
        except ValueError:
            msg = {"error": f"unreadable start line {line[:200]!r}"}
        if "ready" not in msg:
            self.close()
            reason = msg.get("error") or f"no answer within {self._timeout_s:g} s"
            raise BenchError(f"bench server failed to start: {reason}")
        self.addresses = {
            k: tuple(v) if isinstance(v, list) else v for k, v in msg["ready"].items()
        }
        self.errors = dict(msg.get("errors") or {})
        self.engine = Engine(msg.get("engine") or Engine.PYTHON.value)
        self.engine_reason = msg.get("engine_reason") or self.engine_reason
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the child (EOF on its pipe, then SIGTERM/SIGKILL if needed) and remove its files."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(2.0)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def hand_over(self, sock: socket.socket) -> None:
        """Pass one end of a socketpair to the server (SCM_RIGHTS) and close our copy."""
        if self._control is None:
            self._control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._control.connect(self.addresses["socketpair"])
        socket.send_fds(self._control, [b"s"], [sock.fileno()])
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
