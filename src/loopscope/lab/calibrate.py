"""Per-hop cost of a loopback HTTP call: measured here, or read from a ``loopscope bench --json`` file."""

from __future__ import annotations

import http.client
import json
import statistics
import time
from pathlib import Path
from typing import Any

from loopscope.errors import ParseError, ProbeError

__all__ = ["measure_http_rtt_s", "measure_loopback_hop_s", "read_bench_hop_s"]


def measure_http_rtt_s(hostport: str, path: str = "/leaf?work_ms=0", *, count: int = 50) -> float:
    """Median wall time of ``count`` sequential GETs, each on a new loopback connection, seconds.

    Raises:
        ProbeError: a request failed.
    """
    host, _, port = hostport.rpartition(":")
    samples: list[float] = []
    for _ in range(count):
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(host, int(port), timeout=5.0)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ProbeError(hostport, "request", str(exc)) from exc
        finally:
            conn.close()
        if resp.status != 200:
            raise ProbeError(hostport, "request", f"status {resp.status}")
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _walk(node: Any, trail: str) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        label = " ".join(
            str(node.get(k, "")) for k in ("path", "name", "label", "transport", "mode")
        )
        found.append((f"{trail} {label}".lower(), node))
        for key, value in node.items():
            found.extend(_walk(value, f"{trail} {key}"))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value, trail))
    return found


def _p50_s(entry: dict[str, Any]) -> float | None:
    for key, scale in (("p50_s", 1.0), ("p50_us", 1e-6), ("p50_ns", 1e-9), ("p50_ms", 1e-3)):
        if isinstance(entry.get(key), (int, float)):
            return float(entry[key]) * scale
    for nested in ("summary", "latency", "rtt", "stats"):
        if isinstance(entry.get(nested), dict):
            value = _p50_s(entry[nested])
            if value is not None:
                return value
    return None


def read_bench_hop_s(path: Path) -> float:
    """The p50 of the HTTP/1.1 new-connection path (else keep-alive, else TCP 127.0.0.1) at its smallest
    payload in a ``loopscope bench --json`` document, seconds. Entries are found by their
    ``path``/``name``/``label`` and a ``p50_s``/``p50_us``/``p50_ns`` figure (directly or under
    ``summary``), so small schema changes do not break it. Example: a cell
    ``{"path": "http-newconn", "size_bytes": 1, "summary": {"p50_ns": 380000}}`` -> 0.00038.

    Raises:
        ParseError: unreadable JSON or no usable entry.
    """
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ParseError(f"cannot read bench JSON: {exc}", path=str(path)) from exc
    entries = [(label, e) for label, e in _walk(doc, "") if _p50_s(e) is not None]
    for wanted in (("http", "new"), ("http", "close"), ("http", "keep"), ("http",), ("tcp", "127")):
        hits = [e for label, e in entries if all(w in label for w in wanted)]
        if hits:  # the smallest payload: a hop of a small internal call
            best = min(hits, key=lambda e: int(e.get("size_bytes") or 0))
            value = _p50_s(best)
            assert value is not None
            return value
    raise ParseError("no HTTP or TCP 127.0.0.1 entry with a p50 figure", path=str(path))


def measure_loopback_hop_s(count: int = 200) -> float:
    """Median round trip of an empty GET on a new connection to a stdlib HTTP server started here on
    127.0.0.1:0 (Nagle off) and stopped before returning, seconds.

    Raises:
        ProbeError: a request failed.
    """
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class _Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        return measure_http_rtt_s(f"127.0.0.1:{server.server_address[1]}", "/", count=count)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)
