"""Serving helpers: --listen parsing, the DNS-rebinding Host check, the HTTP server on a real socket."""

from __future__ import annotations

import http.client
import threading

import pytest
from prometheus_client import CollectorRegistry

from loopscope.errors import UsageError
from loopscope.exporter.serve import host_allowed, make_metrics_server, parse_listen


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9864") == ("127.0.0.1", 9864)
    assert parse_listen("[::1]:9") == ("::1", 9)
    for bad in ("localhost:9864", "127.0.0.1", "1.2.3.4:99999"):
        with pytest.raises(UsageError):
            parse_listen(bad)


def test_host_header_guard() -> None:
    assert host_allowed("127.0.0.1:9864", "127.0.0.1")
    assert host_allowed("localhost:9864", "127.0.0.1")
    assert host_allowed("[::1]:9864", "::1")
    assert host_allowed(None, "127.0.0.1")
    assert not host_allowed("evil.example:9864", "127.0.0.1")
    assert host_allowed("node1.example:9864", "0.0.0.0")  # explicit wide bind


def _get(port: int, host_header: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics", headers={"Host": host_header})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_server_refuses_a_foreign_host_and_a_second_bind_says_why() -> None:
    server = make_metrics_server(CollectorRegistry(), "127.0.0.1", 0)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        assert _get(port, f"127.0.0.1:{port}")[0] == 200
        assert _get(port, "evil.example")[0] == 403
        with pytest.raises(UsageError, match="another exporter"):
            make_metrics_server(CollectorRegistry(), "127.0.0.1", port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
