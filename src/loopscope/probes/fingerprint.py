"""What answers on a TCP port, from safe read-only exchanges (no login, no writes, no state change).

Order (each exchange on a fresh connection; the first that identifies wins):

1. **Banner**: connect and wait briefly (longer on ports where the server speaks first): SSH
   (``SSH-2.0-OpenSSH_9.2p1``), MySQL/MariaDB (v10 handshake packet), SMTP/FTP (``220``), POP3 (``+OK``),
   IMAP (``* OK``), VNC (``RFB 003.008``).
2. Port hints first where they exist (6379 Redis, 5432 PostgreSQL, 11211 memcached, 443 TLS), then:
3. **HTTP** ``GET / HTTP/1.0`` (no Host header, which Redis treats as an attack): status and ``Server``;
   a TLS alert or nginx's "plain HTTP request was sent to HTTPS port" means TLS.
4. **TLS** handshake (no verification), then HTTP inside: ``https nginx/1.22.1``.
5. **Redis** ``PING`` (+PONG, -NOAUTH, -DENIED), then ``INFO server`` for the version.
6. **PostgreSQL** SSLRequest (8 bytes, answer ``S`` or ``N``; protocol 3, src/backend/postmaster).
7. **memcached** ``version`` (``VERSION 1.6.18``).

Classifying the bytes is pure (:func:`classify_banner`, :func:`classify_http`...), tested on recorded replies.
"""

from __future__ import annotations

import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from loopscope.model.probe import Fingerprint

__all__ = [
    "PG_SSL_REQUEST",
    "classify_banner",
    "classify_http",
    "classify_memcached",
    "classify_postgres_ssl",
    "classify_redis",
    "fingerprint_listener",
    "fingerprint_listeners",
]

PG_SSL_REQUEST = struct.pack("!II", 8, 80877103)
"""PostgreSQL SSLRequest: length 8, code 1234.5679 (src/include/libpq/pqcomm.h NEGOTIATE_SSL_CODE)."""
_SERVER_FIRST = {21, 22, 25, 110, 143, 587, 3306, 5900, 2222}
_HINTS = {
    6379: "redis",
    5432: "postgresql",
    11211: "memcached",
    443: "tls",
    8443: "tls",
    993: "tls",
    995: "tls",
    465: "tls",
    636: "tls",
    6443: "tls",
}


def classify_banner(data: bytes, port: int | None = None) -> Fingerprint | None:
    """Identify a server-first greeting.

    Example: ``classify_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\\r\\n")`` ->
    ``Fingerprint(service="ssh", product="OpenSSH", version="9.2p1", ...)``.
    """
    if not data:
        return None
    text = data.decode("latin-1", "replace")
    first = text.splitlines()[0].strip() if text.strip() else ""
    if data.startswith(b"SSH-"):
        soft = first.split("-", 2)[2] if first.count("-") >= 2 else ""
        name = soft.partition(" ")[0]
        m = re.match(r"([A-Za-z][A-Za-z.]*?)[_-]v?(\d[\w.]*)", name)
        product, version = (m.group(1), m.group(2)) if m else (name or None, None)
        return Fingerprint(service="ssh", product=product, version=version, detail=first)
    if (
        len(data) >= 5
        and data[3] == 0
        and data[4] == 10
        and int.from_bytes(data[:3], "little") + 4 <= len(data) + 64
    ):
        ver = data[5:].split(b"\x00", 1)[0].decode("latin-1", "replace")
        product = "MariaDB" if "mariadb" in ver.lower() else "MySQL"
        m = re.search(r"(\d+\.\d+\.\d+)", ver.replace("5.5.5-", "", 1))
        return Fingerprint(
            service="mysql", product=product, version=m.group(1) if m else ver, detail=ver
        )
    if len(data) >= 5 and data[4] == 0xFF and data[3] == 0:
        msg = data[7:].decode("latin-1", "replace")
        return Fingerprint(service="mysql", detail=f"error packet: {msg[:80]}")
    if first.startswith("220"):
        up = first.upper()
        if "FTP" in up or (port == 21 and "SMTP" not in up):
            return Fingerprint(service="ftp", product=_word_after(first, "220"), detail=first)
        if "SMTP" in up or "POSTFIX" in up or "EXIM" in up or port in (25, 465, 587):
            return Fingerprint(service="smtp", product=_smtp_product(first), detail=first)
        return Fingerprint(service="smtp-or-ftp", detail=first)
    if first.startswith("+OK"):
        return Fingerprint(service="pop3", detail=first)
    if first.startswith("* OK"):
        return Fingerprint(service="imap", detail=first)
    if data.startswith(b"RFB "):
        return Fingerprint(service="vnc", version=first[4:], detail=first)
    if data[:1] in (b"\x15", b"\x16") and data[1:2] == b"\x03":
        return Fingerprint(service="tls", tls=True, detail="TLS record without a ClientHello")
    return None


def _word_after(line: str, prefix: str) -> str | None:
    words = line[len(prefix) :].strip(" -").split()
    return words[0] if words else None


def _smtp_product(line: str) -> str | None:
    for name in ("Postfix", "Exim", "Sendmail", "OpenSMTPD", "Microsoft", "qmail"):
        if name.lower() in line.lower():
            return name
    return None


def classify_http(data: bytes, *, tls: bool = False) -> Fingerprint | None:
    """Identify an HTTP response; None if ``data`` is not one.

    Example: ``classify_http(b"HTTP/1.1 200 OK\\r\\nServer: nginx/1.22.1\\r\\n\\r\\n")`` ->
    ``Fingerprint(service="http", product="nginx", version="1.22.1", detail="HTTP/1.1 200 OK")``.
    """
    if not data.startswith(b"HTTP/"):
        return None
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1", "replace")
    lines = head.split("\r\n")
    server = next(
        (ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("server:")), None
    )
    product = version = None
    if server:
        m = re.match(r"([^/\s]+)(?:/(\S+))?", server)
        if m:
            product, version = m.group(1), m.group(2)
    if not tls and b"HTTPS port" in data:
        return Fingerprint(
            service="tls",
            tls=True,
            product=product,
            version=version,
            detail="plain HTTP answered with 'sent to HTTPS port'",
        )
    return Fingerprint(
        service="https" if tls else "http",
        product=product,
        version=version,
        detail=lines[0],
        tls=tls,
    )


def classify_redis(ping_reply: bytes, info_reply: bytes = b"") -> Fingerprint | None:
    """Identify Redis (or a RESP server: KeyDB, Valkey, Dragonfly) from PING and INFO replies.

    Example: ``classify_redis(b"+PONG\\r\\n", b"$30\\r\\n# Server\\r\\nredis_version:7.0.15\\r\\n")`` ->
    ``Fingerprint(service="redis", product="Redis", version="7.0.15", detail="+PONG")``.
    """
    first = ping_reply.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    if not (
        first == "+PONG" or first.startswith(("-NOAUTH", "-DENIED", "-ERR operation not permitted"))
    ):
        return None
    info = info_reply.decode("latin-1", "replace")
    m = re.search(r"redis_version:(\S+)", info)
    product = "Valkey" if "valkey_version" in info else "Redis"
    return Fingerprint(
        service="redis", product=product, version=m.group(1) if m else None, detail=first
    )


def classify_postgres_ssl(reply: bytes) -> Fingerprint | None:
    """``S`` (SSL offered) or ``N`` (no SSL) to an SSLRequest: PostgreSQL.

    Example: ``classify_postgres_ssl(b"N").detail == "SSLRequest answered N (no TLS)"``.
    """
    if reply in (b"S", b"N"):
        return Fingerprint(
            service="postgresql",
            product="PostgreSQL",
            detail=f"SSLRequest answered {reply.decode()} ({'TLS offered' if reply == b'S' else 'no TLS'})",
        )
    return None


def classify_memcached(reply: bytes) -> Fingerprint | None:
    """``VERSION 1.6.18`` -> memcached 1.6.18."""
    m = re.match(rb"VERSION (\S+)\r\n", reply)
    if not m:
        return None
    return Fingerprint(
        service="memcached",
        product="memcached",
        version=m.group(1).decode(),
        detail=m.group(0).decode().strip(),
    )


def _connect(host: str, port: int, timeout_s: float) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _read(sock: socket.socket, deadline: float, done: Callable[[bytes], bool]) -> bytes:
    buf = b""
    while not done(buf):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except OSError:
            break  # reset by a server that did not like the probe: the bytes so far are the answer
        if not chunk:
            break
        buf += chunk
    return buf


def _exchange(
    host: str,
    port: int,
    payload: bytes | None,
    wait_s: float,
    timeout_s: float,
    done: Callable[[bytes], bool] = lambda b: bool(b),
) -> bytes:
    sock = _connect(host, port, timeout_s)
    try:
        if payload:
            sock.sendall(payload)
        return _read(sock, time.monotonic() + wait_s, done)
    finally:
        sock.close()


def _headers_done(b: bytes) -> bool:
    return b"\r\n\r\n" in b or len(b) > 16384 or (bool(b) and not b.startswith(b"HTTP/"[: len(b)]))


def _try_http(host: str, port: int, timeout_s: float) -> tuple[Fingerprint | None, bytes]:
    data = _exchange(
        host,
        port,
        b"GET / HTTP/1.0\r\nUser-Agent: loopscope-fingerprint\r\n\r\n",
        timeout_s,
        timeout_s,
        _headers_done,
    )
    return classify_http(data) or classify_banner(data, port), data


def _try_tls(host: str, port: int, timeout_s: float) -> Fingerprint | None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    sock = _connect(host, port, timeout_s)
    try:
        tls = ctx.wrap_socket(sock, do_handshake_on_connect=False)
        tls.do_handshake()
    except (ssl.SSLError, OSError):
        sock.close()
        return None
    try:
        version = tls.version()
        tls.sendall(b"GET / HTTP/1.0\r\nUser-Agent: loopscope-fingerprint\r\n\r\n")
        data = _read(tls, time.monotonic() + timeout_s, _headers_done)
    except (ssl.SSLError, OSError):
        data = b""
    finally:
        tls.close()
    inner = classify_http(data, tls=True)
    if inner is not None:
        return Fingerprint(
            service="https",
            product=inner.product,
            version=inner.version,
            tls=True,
            detail=f"{version}; {inner.detail}",
        )
    return Fingerprint(service="tls", tls=True, detail=str(version))


def _try_redis(host: str, port: int, timeout_s: float) -> Fingerprint | None:
    sock = _connect(host, port, timeout_s)
    try:
        sock.sendall(b"PING\r\n")
        ping = _read(sock, time.monotonic() + timeout_s, lambda b: b"\r\n" in b)
        info = b""
        if ping.startswith(b"+PONG"):
            sock.sendall(b"INFO server\r\n")
            info = _read(
                sock,
                time.monotonic() + timeout_s,
                lambda b: (b"redis_version" in b and b.endswith(b"\r\n\r\n")) or len(b) > 8192,
            )
    finally:
        sock.close()
    return classify_redis(ping, info)


def _try(name: str, host: str, port: int, timeout_s: float) -> Fingerprint | None:
    if name == "redis":
        return _try_redis(host, port, timeout_s)
    if name == "postgresql":
        return classify_postgres_ssl(_exchange(host, port, PG_SSL_REQUEST, timeout_s, timeout_s))
    if name == "memcached":
        return classify_memcached(
            _exchange(host, port, b"version\r\n", timeout_s, timeout_s, lambda b: b"\r\n" in b)
        )
    if name == "tls":
        return _try_tls(host, port, timeout_s)
    return None


def fingerprint_listener(
    endpoint: Sequence[object], timeout_s: float = 1.0, *, banner_wait_s: float = 0.15
) -> Fingerprint:
    """Identify the service behind a TCP listener.

    Args:
        endpoint: ``(address, port)``; a foundation ``Endpoint`` works. Wildcard binds are reached through
            127.0.0.1 / ::1.
        timeout_s: connect and per-exchange read timeout, seconds.
        banner_wait_s: how long to wait for a server-first greeting on ports not known to have one.

    Returns:
        A Fingerprint; ``closed`` when connecting fails, ``unknown`` (with the first bytes seen) when nothing
        identifies it.
    """
    address, port = str(endpoint[0]), int(endpoint[1])  # type: ignore[call-overload]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)
    t0 = time.perf_counter()

    def done(fp: Fingerprint) -> Fingerprint:
        return Fingerprint(
            service=fp.service,
            product=fp.product,
            version=fp.version,
            detail=fp.detail,
            tls=fp.tls,
            elapsed_s=time.perf_counter() - t0,
        )

    hint = _HINTS.get(port)
    try:
        if hint is None:
            wait = timeout_s if port in _SERVER_FIRST else min(banner_wait_s, timeout_s)
            banner = _exchange(host, port, None, wait, timeout_s)
            fp = classify_banner(banner, port)
            if fp is not None:
                return done(fp)
            if banner:
                return done(Fingerprint(service="unknown", detail=repr(banner[:60])))
        else:
            fp = _try(hint, host, port, timeout_s)
            if fp is not None:
                return done(fp)
        fp, data = _try_http(host, port, timeout_s)
        if fp is not None and fp.service == "tls":
            return done(_try_tls(host, port, timeout_s) or fp)
        if fp is not None:
            return done(fp)
        order = ["redis", "memcached", "postgresql", "tls"]
        if data.startswith(b"ERROR"):
            order = ["memcached", *order]
        for name in order:
            if name == hint:
                continue
            fp = _try(name, host, port, timeout_s)
            if fp is not None:
                return done(fp)
        return done(
            Fingerprint(
                service="unknown", detail=repr(data[:60]) if data else "no answer to any probe"
            )
        )
    except OSError as exc:
        from loopscope.probes.connect import describe_error

        return done(Fingerprint(service="closed", detail=describe_error(exc)))


def fingerprint_listeners(
    endpoints: Iterable[Sequence[object]], timeout_s: float = 1.0, max_workers: int = 16
) -> list[Fingerprint]:
    """:func:`fingerprint_listener` for many endpoints in parallel threads, results in input order."""
    items = list(endpoints)
    if not items:
        return []
    # Daemon threads, not a ThreadPoolExecutor: on Ctrl-C the executor (and interpreter exit)
    # would wait for every probe in flight, seconds of timeouts; daemon threads are left behind.
    results: list[Fingerprint | None] = [None] * len(items)
    failures: list[BaseException] = []
    todo = iter(enumerate(items))
    lock = threading.Lock()

    def work() -> None:
        while not failures:
            with lock:
                nxt = next(todo, None)
            if nxt is None:
                return
            try:
                results[nxt[0]] = fingerprint_listener(nxt[1], timeout_s)
            except BaseException as exc:  # re-raised in the caller's thread
                failures.append(exc)

    threads = [
        threading.Thread(target=work, name="fingerprint", daemon=True)
        for _ in range(min(max_workers, len(items)))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()  # interruptible: Ctrl-C returns at once
    if failures:
        raise failures[0]
    return [r for r in results if r is not None]
