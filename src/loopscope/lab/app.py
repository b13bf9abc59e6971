"""The lab's WSGI application (runs inside gunicorn or waitress, one process, a fixed thread pool).

Endpoints (all GET, parameters in the query string):

* ``/leaf?work_ms=W`` sleeps W ms (an I/O-bound handler: it holds a worker thread, not the CPU).
* ``/selfcall?work_ms=W&child_ms=C&fanout=K&timeout_ms=T`` sleeps W ms, then makes K calls, one after
  the other, to ``/leaf?work_ms=C`` on *this same server* over loopback HTTP (a new connection each, a
  client timeout of T ms). The worker thread blocks meanwhile. 200 if all calls answered 200, else 502.
* ``/inprocess?...`` the same work, but the K leaf calls are function calls in the same thread.
* ``/pool?...`` the same as ``/selfcall`` but the calls go to the separate pool server whose URL is in
  the ``LOOPSCOPE_LAB_POOL`` environment variable (``host:port``).

The server learns its own address from ``LOOPSCOPE_LAB_SELF`` (``host:port``).
"""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

__all__ = ["app", "leaf_work"]

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def leaf_work(work_ms: float) -> None:
    """The leaf's work: hold the thread for ``work_ms`` milliseconds (sleep, so the GIL is free)."""
    if work_ms > 0:
        time.sleep(work_ms / 1000.0)


def _get(hostport: str, path: str, timeout_s: float) -> int:
    """One GET over a new loopback connection; the status, or 0 on timeout / connection error."""
    host, _, port = hostport.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def _param(qs: dict[str, list[str]], name: str, default: float) -> float:
    values = qs.get(name)
    return float(values[0]) if values else default


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI entry point (see the module docstring for the endpoints)."""
    path = environ.get("PATH_INFO", "/")
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        work_ms = _param(qs, "work_ms", 0.0)
        child_ms = _param(qs, "child_ms", work_ms)
        fanout = int(_param(qs, "fanout", 1))
        timeout_s = _param(qs, "timeout_ms", 1000.0) / 1000.0
    except ValueError:
        return _reply(start_response, "400 Bad Request", b"bad parameter\n")
    if path == "/leaf":
        leaf_work(work_ms)
        return _reply(start_response, "200 OK", b"leaf\n")
    if path not in ("/selfcall", "/inprocess", "/pool"):
        return _reply(start_response, "404 Not Found", b"no such endpoint\n")
    leaf_work(work_ms)
    ok = True
    for _ in range(fanout):
        if path == "/inprocess":
            leaf_work(child_ms)
            continue
        target = os.environ.get(
            "LOOPSCOPE_LAB_SELF" if path == "/selfcall" else "LOOPSCOPE_LAB_POOL", ""
        )
        if not target or _get(target, f"/leaf?work_ms={child_ms}", timeout_s) != 200:
            ok = False
            break
    if ok:
        return _reply(start_response, "200 OK", b"done\n")
    return _reply(start_response, "502 Bad Gateway", b"internal call failed\n")


def _reply(start_response: StartResponse, status: str, body: bytes) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
