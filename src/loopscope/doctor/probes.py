"""Active probes of the doctor: TCP/UDP echo through a listener it starts itself, name resolution, and
TCP connect to an external target. Each runs in the calling thread's network namespace.

The echo runs client and server in one thread: connect() completes from the listen queue without an
accept() call, so no second thread is needed, and every socket is closed before returning. Errors are
recorded in the result (``phase`` + ``error``), never raised: a failing probe is a finding.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import time

from loopscope.analysis.doctor.facts import ExternalFacts
from loopscope.backends.resolve import distinct_addresses, resolve_stream
from loopscope.errors import ProbeError, describe_os_error
from loopscope.model import IPAddress
from loopscope.model.echo import EchoResult

__all__ = ["connect_external", "resolve", "tcp_echo", "udp_echo"]


def _err(phase: str, exc: OSError) -> str:
    """``connect: Connection refused (ECONNREFUSED)``, ``connect: timed out``."""
    return f"{phase}: {describe_os_error(exc)}"


def _sockaddr(
    address: IPAddress, port: int, scope_id: int = 0
) -> tuple[str, int] | tuple[str, int, int, int]:
    if address.version == 4:
        return (str(address), port)
    return (str(address), port, 0, scope_id)


def _family(address: IPAddress) -> int:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def tcp_echo(
    address: IPAddress, *, rounds: int = 5, timeout_s: float = 0.5, scope_id: int = 0
) -> EchoResult:
    """Start a listener on ``address`` port 0, connect to it, and time ``rounds`` 1-byte round trips.

    Args:
        address: where to bind and connect (127.0.0.1, ::1, 127.0.0.2, a host address).
        rounds: request/response round trips to time.
        timeout_s: per-operation timeout, seconds (a firewall DROP shows as ``connect: timed out``).
        scope_id: interface index for link-local IPv6.
    """
    family = _family(address)
    phase = "bind"
    port: int | None = None
    connect_us = None
    rtts: list[float] = []
    socks: list[socket.socket] = []
    try:
        server = socket.socket(family, socket.SOCK_STREAM)
        socks.append(server)
        server.bind(_sockaddr(address, 0, scope_id))
        server.listen(8)
        port = server.getsockname()[1]
        phase = "connect"
        client = socket.socket(family, socket.SOCK_STREAM)
        socks.append(client)
        client.settimeout(timeout_s)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # close with RST: the probe must not add TIME_WAIT sockets to the pressure it measures
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t0 = time.perf_counter_ns()
        client.connect(_sockaddr(address, port, scope_id))
        connect_us = (time.perf_counter_ns() - t0) / 1e3
        phase = "accept"
        server.settimeout(timeout_s)
        conn, _ = server.accept()
        socks.append(conn)
        conn.settimeout(timeout_s)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(rounds):
            phase = "send"
            t0 = time.perf_counter_ns()
            client.sendall(b"x")
            phase = "recv"
            if conn.recv(1) != b"x":
                raise ConnectionResetError(errno.ECONNRESET, "peer closed")
            conn.sendall(b"y")
            if client.recv(1) != b"y":
                raise ConnectionResetError(errno.ECONNRESET, "peer closed")
            rtts.append((time.perf_counter_ns() - t0) / 1e3)
        phase = "done"
        return EchoResult(
            proto="tcp",
            address=address,
            port=port,
            phase=phase,
            connect_us=connect_us,
            rtts_us=tuple(rtts),
        )
    except OSError as exc:
        return EchoResult(
            proto="tcp",
            address=address,
            port=port,
            phase=phase,
            connect_us=connect_us,
            rtts_us=tuple(rtts),
            error=_err(phase, exc),
        )
    finally:
        for s in reversed(socks):
            s.close()


def udp_echo(
    address: IPAddress, *, rounds: int = 5, timeout_s: float = 0.5, scope_id: int = 0
) -> EchoResult:
    """Bind a UDP socket on ``address`` port 0 and time ``rounds`` 1-byte datagram round trips to it."""
    family = _family(address)
    phase = "bind"
    port: int | None = None
    rtts: list[float] = []
    socks: list[socket.socket] = []
    try:
        server = socket.socket(family, socket.SOCK_DGRAM)
        socks.append(server)
        server.bind(_sockaddr(address, 0, scope_id))
        server.settimeout(timeout_s)
        port = server.getsockname()[1]
        client = socket.socket(family, socket.SOCK_DGRAM)
        socks.append(client)
        client.settimeout(timeout_s)
        phase = "connect"
        client.connect(_sockaddr(address, port, scope_id))
        for _ in range(rounds):
            phase = "send"
            t0 = time.perf_counter_ns()
            client.send(b"x")
            phase = "recv"
            _data, peer = server.recvfrom(16)
            server.sendto(b"y", peer)
            client.recv(16)
            rtts.append((time.perf_counter_ns() - t0) / 1e3)
        phase = "done"
        return EchoResult(proto="udp", address=address, port=port, phase=phase, rtts_us=tuple(rtts))
    except OSError as exc:
        return EchoResult(
            proto="udp",
            address=address,
            port=port,
            phase=phase,
            rtts_us=tuple(rtts),
            error=_err(phase, exc),
        )
    finally:
        for s in reversed(socks):
            s.close()


def resolve(name: str, port: int | None = None) -> tuple[tuple[IPAddress, ...], float, str | None]:
    """getaddrinfo(name, AF_UNSPEC, SOCK_STREAM): distinct addresses in order, time in us, error.

    Resolution order depends on the *calling thread's* namespace too: glibc's RFC 6724 sort probes each
    destination with a UDP connect() and puts unreachable ones last (rule 1).
    """
    t0 = time.perf_counter_ns()
    try:
        answers = resolve_stream(name, port)
    except ProbeError as exc:
        return (), (time.perf_counter_ns() - t0) / 1e3, exc.reason
    took_us = (time.perf_counter_ns() - t0) / 1e3
    return distinct_addresses(answers), took_us, None


def connect_external(host: str, port: int, *, timeout_s: float = 3.0) -> ExternalFacts:
    """Resolve ``host`` and TCP-connect to its addresses in order until one answers."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses: tuple[IPAddress, ...] = (literal,)
        resolve_us: float | None = 0.0
        resolve_error = None
    else:
        addresses, resolve_us, resolve_error = resolve(host, port)
    connects: list[tuple[str, float | None, str | None]] = []
    for addr in addresses:
        sock = socket.socket(_family(addr), socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        t0 = time.perf_counter_ns()
        try:
            sock.connect(_sockaddr(addr, port))
            connects.append((str(addr), (time.perf_counter_ns() - t0) / 1e3, None))
            break
        except OSError as exc:
            connects.append((str(addr), None, _err("connect", exc)))
        finally:
            sock.close()
    return ExternalFacts(
        host=host,
        port=port,
        addresses=addresses,
        resolve_us=resolve_us,
        resolve_error=resolve_error,
        connects=tuple(connects),
    )
