"""One address, one or more tries: TCP connect, TLS handshake, HTTP/1.1 exchange, with timings.

HTTP goes through :class:`http.client.HTTPResponse` over our own socket so that the time to first byte is
measured at the first ``recv`` that returns data (not when the status line is parsed). ``--count N``
sends N requests over one kept-alive connection when the server allows it, reconnecting when it closes:
that is where the Nagle + delayed-ACK stall shows.
"""

from __future__ import annotations

import datetime
import errno
import http.client
import io
import socket
import ssl
import time

from loopscope.errors import errno_name
from loopscope.model.probe import Attempt, HttpInfo, TlsInfo

__all__ = ["MAX_BODY_BYTES", "connect_tcp", "describe_error", "probe_series", "tls_wrap"]

MAX_BODY_BYTES = 1 << 20
"""Body bytes kept for --expect-body / --expect-json (the size is counted in full)."""


def describe_error(exc: BaseException) -> str:
    """``ConnectionRefusedError`` -> ``ECONNREFUSED``; timeouts -> ``ETIMEDOUT``; TLS errors -> ``TLS: ...``."""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "ETIMEDOUT"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno_name(exc.errno)
    return f"{type(exc).__name__}: {exc}"


def connect_tcp(address: str, port: int, timeout_s: float) -> tuple[socket.socket, float]:
    """Connect with TCP_NODELAY; returns the socket and the connect time in seconds.

    Raises:
        OSError: the connect failed (refused, timed out, unreachable).
    """
    ip = address.split("%")[0]
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout_s)
        t0 = time.perf_counter()
        sock.connect((address, port))
        return sock, time.perf_counter() - t0
    except BaseException:
        sock.close()
        raise


def _name(parts: object) -> str | None:
    try:
        return ", ".join(f"{k}={v}" for rdn in parts for k, v in rdn)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None


def _cert_info(der: bytes | None) -> dict[str, object]:
    if not der:
        return {}
    try:
        from cryptography import x509
    except ImportError:
        return {}
    cert = x509.load_der_x509_certificate(der)
    not_after = cert.not_valid_after_utc
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_after": not_after.isoformat(),
        "expires_in_s": (not_after - now).total_seconds(),
        "self_signed": cert.subject == cert.issuer,
    }


def tls_wrap(
    sock: socket.socket, server_name: str | None, timeout_s: float
) -> tuple[ssl.SSLSocket, TlsInfo]:
    """TLS handshake without verification (this is a diagnosis: self-signed local certificates are normal;
    ``self_signed`` and the expiry are reported instead).

    Raises:
        ssl.SSLError, OSError: the handshake failed.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    sock.settimeout(timeout_s)
    t0 = time.perf_counter()
    tls = ctx.wrap_socket(sock, server_hostname=server_name, do_handshake_on_connect=False)
    tls.do_handshake()
    elapsed = time.perf_counter() - t0
    cipher = tls.cipher()
    info = _cert_info(tls.getpeercert(binary_form=True))
    return tls, TlsInfo(
        version=tls.version() or "?",
        cipher=cipher[0] if cipher else "?",
        handshake_s=elapsed,
        subject=info.get("subject"),  # type: ignore[arg-type]
        issuer=info.get("issuer"),  # type: ignore[arg-type]
        not_after=info.get("not_after"),  # type: ignore[arg-type]
        expires_in_s=info.get("expires_in_s"),  # type: ignore[arg-type]
        self_signed=info.get("self_signed"),  # type: ignore[arg-type]
        alpn=tls.selected_alpn_protocol(),
    )


class _TimedRaw(io.RawIOBase):
    """Socket reader that notes when the first bytes arrive and keeps them (for banners)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.first_at: float | None = None
        self.first_bytes = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        n = self.sock.recv_into(buf)
        if n and self.first_at is None:
            self.first_at = time.perf_counter()
            self.first_bytes = bytes(buf[: min(n, 512)])
        return n


class _FakeSock:
    def __init__(self, reader: io.BufferedReader) -> None:
        self.reader = reader

    def makefile(self, mode: str, *args: object, **kwargs: object) -> io.BufferedReader:
        return self.reader


def _request(host_header: str, path: str, keep_alive: bool) -> bytes:
    conn = "keep-alive" if keep_alive else "close"
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: loopscope-probe\r\nAccept: */*\r\n"
        f"Connection: {conn}\r\n\r\n"
    ).encode("latin-1")


def _http_exchange(
    sock: socket.socket, request: bytes
) -> tuple[HttpInfo | None, bytes | None, bool]:
    """Send one request, read one response. Returns (info, banner-if-not-HTTP, server closes).

    Raises:
        OSError: send/recv failed or timed out (http.client.HTTPException for a truncated response).
    """
    raw = _TimedRaw(sock)
    reader = io.BufferedReader(raw)
    t0 = time.perf_counter()
    sock.sendall(request)
    resp = http.client.HTTPResponse(_FakeSock(reader), method="GET")  # type: ignore[arg-type]
    try:
        resp.begin()
    except (http.client.BadStatusLine, http.client.LineTooLong, http.client.IncompleteRead) as exc:
        if raw.first_bytes:
            return None, raw.first_bytes, True
        raise ConnectionResetError(errno.ECONNRESET, "no response") from exc
    kept = b""
    size = 0
    while True:
        chunk = resp.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if len(kept) < MAX_BODY_BYTES:
            kept += chunk[: MAX_BODY_BYTES - len(kept)]
    done = time.perf_counter()
    headers = tuple((k.lower(), v) for k, v in resp.getheaders())
    info = HttpInfo(
        status=resp.status,
        reason=resp.reason,
        headers=headers,
        body_bytes=size,
        ttfb_s=(raw.first_at or done) - t0,
        total_s=done - t0,
        body=kept,
    )
    return info, None, bool(resp.will_close)


def probe_series(
    address: str,
    port: int,
    *,
    mode: str,
    count: int = 1,
    path: str = "/",
    host_header: str | None = None,
    server_name: str | None = None,
    timeout_s: float = 2.0,
) -> list[Attempt]:
    """Try one address ``count`` times.

    Args:
        address: IP literal.
        port: TCP port.
        mode: ``tcp`` (connect only), ``http``, ``https`` (TLS then HTTP) or ``tls`` (handshake only).
        count: tries; HTTP reuses a kept-alive connection between tries.
        path: HTTP path.
        host_header: Host header; defaults to the address (bracketed for IPv6) and port.
        server_name: TLS SNI; None sends none (IP literals).
        timeout_s: per phase timeout, seconds.

    Returns:
        One Attempt per try; a failed try ends the series only if connecting fails.
    """
    host_header = host_header or (f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
    out: list[Attempt] = []
    sock: socket.socket | None = None
    try:
        for _ in range(count):
            reused = sock is not None
            connect_s: float | None = None
            tls_info: TlsInfo | None = None
            if sock is None:
                try:
                    sock, connect_s = connect_tcp(address, port, timeout_s)
                except OSError as exc:
                    out.append(
                        Attempt(
                            address=address,
                            port=port,
                            ok=False,
                            error=describe_error(exc),
                            phase="connect",
                        )
                    )
                    continue
                if mode in ("https", "tls"):
                    try:
                        sock, tls_info = tls_wrap(sock, server_name, timeout_s)
                    except (OSError, ssl.SSLError) as exc:
                        sock.close()
                        sock = None
                        out.append(
                            Attempt(
                                address=address,
                                port=port,
                                ok=False,
                                connect_s=connect_s,
                                error=describe_error(exc),
                                phase="tls",
                            )
                        )
                        continue
            if mode in ("tcp", "tls"):
                out.append(
                    Attempt(address=address, port=port, ok=True, connect_s=connect_s, tls=tls_info)
                )
                sock.close()
                sock = None
                continue
            try:
                info, banner, closes = _http_exchange(
                    sock, _request(host_header, path, keep_alive=count > 1)
                )
            except (OSError, http.client.HTTPException) as exc:
                sock.close()
                sock = None
                out.append(
                    Attempt(
                        address=address,
                        port=port,
                        ok=False,
                        connect_s=connect_s,
                        tls=tls_info,
                        error=describe_error(exc),
                        phase="read",
                        reused_connection=reused,
                    )
                )
                continue
            if banner is not None:
                tls_hint = banner[:1] == b"\x15" or banner[:2] == b"\x16\x03"
                out.append(
                    Attempt(
                        address=address,
                        port=port,
                        ok=False,
                        connect_s=connect_s,
                        tls=tls_info,
                        banner=banner,
                        phase="read",
                        error="server speaks TLS" if tls_hint else "not HTTP",
                    )
                )
            else:
                out.append(
                    Attempt(
                        address=address,
                        port=port,
                        ok=True,
                        connect_s=connect_s,
                        tls=tls_info,
                        http=info,
                        reused_connection=reused,
                    )
                )
            if closes or banner is not None:
                sock.close()
                sock = None
    finally:
        if sock is not None:
            sock.close()
    return out
