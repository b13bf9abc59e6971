"""Live: the kernel filter passes exactly the payload-bearing segments; start lines are read once each."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from loopscope.backends.linux.http_capture import HttpCapture
from loopscope.model.events import HttpKind

pytestmark = [pytest.mark.linux, pytest.mark.root]


def _server(sock: socket.socket) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        while data := conn.recv(4096):
            assert data.startswith(b"GET ")
            conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        conn.close()


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_capture_sees_each_request_and_response_once(family: int, host: str) -> None:
    srv = socket.socket(family)
    srv.bind((host, 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    threading.Thread(target=_server, args=(srv,), daemon=True).start()
    cap = HttpCapture([port])
    try:
        for conn_no in range(3):
            c = socket.create_connection((host, port))
            for k in range(4):
                c.sendall(f"GET /c{conn_no}/r{k}?q=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                c.recv(4096)
            c.close()
        time.sleep(0.3)
        events = cap.drain()
        packets = cap.packets
    finally:
        cap.close()
        srv.close()
    reqs = [e for e in events if e.kind is HttpKind.REQUEST]
    resps = [e for e in events if e.kind is HttpKind.RESPONSE]
    assert sorted(e.path or "" for e in reqs) == sorted(
        f"/c{c}/r{k}" for c in range(3) for k in range(4)
    )
    assert [e.status for e in resps] == [204] * 12
    # SYN, ACK, FIN segments and the outgoing copies never reach Python: 24 data segments only
    assert packets == 24
    assert all(e.at_ns > 0 for e in events)
