"""Record the replies real servers give to the fingerprint exchanges -> fixtures/replies.json (run as root
from the repo root: python tests/unit/probes/record_fingerprint_replies.py)."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "live"))

from servers import memcached_server, nginx_server, postgres_server, redis_server, sshd_server

from loopscope.probes.fingerprint import PG_SSL_REQUEST


def exchange(port: int, payload: bytes | None, wait_s: float = 0.5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        if payload:
            s.sendall(payload)
        buf, end = b"", time.monotonic() + wait_s
        while time.monotonic() < end:
            s.settimeout(max(0.01, end - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except (TimeoutError, OSError):
                break
            if not chunk:
                break
            buf += chunk
        return buf


GET = b"GET / HTTP/1.0\r\nUser-Agent: loopscope-fingerprint\r\n\r\n"
out: dict[str, str] = {}
with sshd_server() as s:
    out["ssh_banner"] = exchange(s.port, None).hex()
with redis_server() as s:
    out["redis_ping"] = exchange(s.port, b"PING\r\n").hex()
    out["redis_info"] = exchange(s.port, b"INFO server\r\n").hex()
    out["redis_http_get"] = exchange(s.port, GET).hex()
with postgres_server() as s:
    out["postgres_sslrequest"] = exchange(s.port, PG_SSL_REQUEST).hex()
with memcached_server() as s:
    out["memcached_version"] = exchange(s.port, b"version\r\n").hex()
    out["memcached_http_get"] = exchange(s.port, GET).hex()
with nginx_server(tls=False) as s:
    out["nginx_http_get"] = exchange(s.port, GET).hex()
with nginx_server(tls=True) as s:
    out["nginx_tls_port_http_get"] = exchange(s.port, GET).hex()
(Path(__file__).parent / "fixtures" / "replies.json").write_text(json.dumps(out, indent=1) + "\n")
print(sorted(out))
