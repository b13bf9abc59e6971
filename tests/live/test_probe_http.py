"""Live: the HTTP exchange of probes/connect.py against real sockets: TTFB measured at the first byte,
chunked bodies, keep-alive reuse vs reconnects, non-HTTP banners and TLS detection."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from loopscope.probes.connect import probe_series

pytestmark = [pytest.mark.linux]


@contextmanager
def raw_server(handler) -> Iterator[int]:  # type: ignore[no-untyped-def]
    """A listener on 127.0.0.1:0 calling ``handler(conn)`` per connection in a thread."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.1)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                try:
                    handler(conn)
                except OSError:
                    pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        srv.close()


def _read_request(conn: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def test_ttfb_is_time_to_first_byte_not_to_last() -> None:
    def slow(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _read_request(conn)
        time.sleep(0.05)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\n")
        time.sleep(0.08)
        conn.sendall(b"body")

    with raw_server(slow) as port:
        (att,) = probe_series("127.0.0.1", port, mode="http", timeout_s=2)
    assert att.ok and att.http is not None
    assert 0.045 <= att.http.ttfb_s < 0.12
    assert att.http.total_s >= att.http.ttfb_s + 0.07
    assert att.http.body == b"body"


def test_chunked_body_and_keep_alive_reuse() -> None:
    def chunked(conn: socket.socket) -> None:
        while _read_request(conn):
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )

    with raw_server(chunked) as port:
        atts = probe_series("127.0.0.1", port, mode="http", count=5, timeout_s=2)
    assert all(
        a.ok and a.http and a.http.body_bytes == 11 and a.http.header("x-a") == "1" for a in atts
    )
    assert [a.reused_connection for a in atts] == [False, True, True, True, True]
    assert atts[0].connect_s is not None and all(a.connect_s is None for a in atts[1:])


def test_server_closing_each_time_means_reconnects() -> None:
    def close_each(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.0 204 No Content\r\n\r\n")

    with raw_server(close_each) as port:
        atts = probe_series("127.0.0.1", port, mode="http", count=3, timeout_s=2)
    assert [a.http.status for a in atts if a.http] == [204, 204, 204]
    assert not any(a.reused_connection for a in atts) and all(a.connect_s is not None for a in atts)


def test_non_http_banner_and_tls_alert_are_recognised() -> None:
    def ssh_like(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-Fake_1.0\r\n")
        time.sleep(0.05)

    def tls_alert(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(bytes.fromhex("15030100020232"))

    with raw_server(ssh_like) as port:
        (att,) = probe_series("127.0.0.1", port, mode="http", timeout_s=1)
    assert (
        not att.ok
        and att.error == "not HTTP"
        and att.banner is not None
        and att.banner.startswith(b"SSH-2.0")
    )
    with raw_server(tls_alert) as port:
        (att,) = probe_series("127.0.0.1", port, mode="http", timeout_s=1)
    assert att.error == "server speaks TLS"


def test_read_timeout_is_reported_as_such() -> None:
    def silent(conn: socket.socket) -> None:
        _read_request(conn)
        time.sleep(0.6)

    with raw_server(silent) as port:
        (att,) = probe_series("127.0.0.1", port, mode="http", timeout_s=0.2)
    assert (
        not att.ok
        and att.phase == "read"
        and att.error == "ETIMEDOUT"
        and att.connect_s is not None
    )
