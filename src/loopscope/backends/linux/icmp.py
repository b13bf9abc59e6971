"""ICMP echo (ping) to an address, from Python, in the calling thread's network namespace.

Two ways to send, chosen in :func:`icmp_method`:

- ``raw``: ``socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)`` needs CAP_NET_RAW (root). IPv4 replies arrive with
  their IP header; the socket also sees our own echo request looped back, so replies are matched on
  type (0 / 129), identifier and sequence. For ICMPv6 the kernel fills the checksum (RFC 3542 s3.1).
- ``dgram``: ``socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)``, the unprivileged "ping socket"
  (net/ipv4/ping.c), allowed when the caller's gid is inside ``net.ipv4.ping_group_range`` (which also
  governs ICMPv6 ping sockets). The kernel sets the identifier and checksum; replies come without IP header.

Sources of truth: RFC 792 (echo, type 8/0), RFC 4443 (echo, type 128/129), RFC 1071 (checksum).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time

from loopscope.model import IPAddress
from loopscope.model.echo import IcmpResult

__all__ = ["build_echo", "checksum", "icmp_method", "ping"]

_ECHO = struct.Struct("!BBHHH")


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum of ``data``.

    Example: ``checksum(bytes.fromhex("0800 0000 1234 0001"))`` -> ``0xe5ca``.
    """
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_echo(version: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An echo request: type 8 (IPv4, checksummed here) or 128 (IPv6, checksum left to the kernel)."""
    if version == 4:
        head = _ECHO.pack(8, 0, 0, ident, seq)
        return _ECHO.pack(8, 0, checksum(head + payload), ident, seq) + payload
    return _ECHO.pack(128, 0, 0, ident, seq) + payload


def icmp_method(ping_group_range: tuple[int, int] | None) -> tuple[str, str | None]:
    """Which ICMP socket this process may open: ``("raw", None)``, ``("dgram", None)`` or
    ``("none", reason)``."""
    if os.geteuid() == 0:
        return "raw", None
    gids = {os.getegid(), *os.getgroups()}
    if ping_group_range is not None:
        low, high = ping_group_range
        if any(low <= g <= high for g in gids):
            return "dgram", None
    return "none", (
        f"not root (no CAP_NET_RAW) and no group of this process {sorted(gids)} is inside "
        f"net.ipv4.ping_group_range={ping_group_range}; run as root, or "
        "sysctl -w net.ipv4.ping_group_range='0 2147483647'"
    )


def _open(version: int, method: str) -> socket.socket:
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    proto = socket.IPPROTO_ICMP if version == 4 else socket.IPPROTO_ICMPV6
    kind = socket.SOCK_RAW if method == "raw" else socket.SOCK_DGRAM
    return socket.socket(family, kind, proto)


def _match(data: bytes, version: int, method: str, ident: int | None, seq: int) -> bool:
    if version == 4 and method == "raw" and len(data) >= 20:
        data = data[(data[0] & 0x0F) * 4 :]
    if len(data) < _ECHO.size:
        return False
    rtype, _code, _sum, rid, rseq = _ECHO.unpack_from(data)
    want = 0 if version == 4 else 129
    return rtype == want and rseq == seq and (ident is None or rid == ident)


def ping(
    target: IPAddress,
    *,
    method: str,
    count: int = 3,
    timeout_s: float = 0.3,
    skipped_reason: str | None = None,
) -> IcmpResult:
    """Send up to ``count`` echo requests to ``target`` one after the other and time each reply; stop at
    the first request left unanswered.

    Args:
        target: address to ping.
        method: ``raw``, ``dgram`` or ``none`` (see :func:`icmp_method`).
        count: requests to send.
        timeout_s: how long to wait for each reply, seconds.
        skipped_reason: why ``method`` is ``none``.

    Returns:
        An :class:`IcmpResult`; socket errors are recorded in ``error``, never raised.
    """
    if method == "none":
        return IcmpResult(target=target, method=method, skipped_reason=skipped_reason)
    version = target.version
    try:
        sock = _open(version, method)
    except OSError as exc:
        return IcmpResult(target=target, method=method, error=f"socket: {exc.strerror}")
    ident = os.getpid() & 0xFFFF
    sent = 0
    rtts: list[float] = []
    error = None
    with sock:
        sock.setblocking(False)
        for seq in range(1, count + 1):
            packet = build_echo(version, ident, seq, b"loopscope-doctor")
            start = time.perf_counter_ns()
            try:
                sock.sendto(packet, (str(target), 0))
            except OSError as exc:
                error = f"sendto: {exc.strerror}"
                break
            sent += 1
            deadline = start + int(timeout_s * 1e9)
            got = False
            while not got:
                left_s = (deadline - time.perf_counter_ns()) / 1e9
                if left_s <= 0 or not select.select([sock], [], [], left_s)[0]:
                    break
                try:
                    data = sock.recv(2048)
                except OSError as exc:
                    error = f"recv: {exc.strerror}"
                    break
                got = _match(data, version, method, ident if method == "raw" else None, seq)
                if got:
                    rtts.append((time.perf_counter_ns() - start) / 1e3)
            if not got and error is None:
                error = f"no echo reply within {timeout_s * 1000:.0f} ms"
            if not got:
                break  # one silent request is enough: do not wait count times as long
    return IcmpResult(
        target=target,
        method=method,
        sent=sent,
        received=len(rtts),
        rtts_us=tuple(rtts),
        error=error,
    )
