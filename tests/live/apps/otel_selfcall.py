"""A small Flask app that calls itself, for loopscope's trace tests; run it under gunicorn with
OpenTelemetry's own auto-instrumentation (``opentelemetry-instrument gunicorn ...``).

Endpoints (``SELF_URL`` is the app's own base URL, by default the one the request came in on;
``OTHER_URL`` a second local service):
- ``/seq``: two sequential self-calls (``/price`` then ``/stock``);
- ``/fan``: a parallel fan-out of three self-calls (``/a``, ``/b``, ``/c``) on a thread pool;
- ``/none``: no self-call;
- ``/other``: one call to the second service (``OTHER_URL/x``), not a self-call;
- ``/price``, ``/stock``, ``/a``, ``/b``, ``/c``, ``/x``: leaves that sleep ``LEAF_SLEEP_S`` (5 ms).
HTTP calls go through urllib (instrumented by opentelemetry-instrumentation-urllib); the fan-out copies
the context into each thread so the spans stay in the request's trace.
"""

from __future__ import annotations

import contextvars
import os
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from flask import Flask, request

app = Flask(__name__)
SELF_URL = os.environ.get("SELF_URL")
OTHER_URL = os.environ.get("OTHER_URL", "http://127.0.0.1:8001")
LEAF_SLEEP_S = float(os.environ.get("LEAF_SLEEP_S", "0.005"))
_pool = ThreadPoolExecutor(max_workers=3)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def _self_url() -> str:
    return SELF_URL or request.host_url.rstrip("/")


@app.route("/seq")
def seq() -> str:
    base = _self_url()
    return _get(f"{base}/price") + _get(f"{base}/stock")


@app.route("/fan")
def fan() -> str:
    base = _self_url()
    futures = [
        _pool.submit(contextvars.copy_context().run, _get, f"{base}/{leaf}")
        for leaf in ("a", "b", "c")
    ]
    return "".join(f.result() for f in futures)


@app.route("/none")
def none() -> str:
    return "none"


@app.route("/other")
def other() -> str:
    return _get(f"{OTHER_URL}/x")


@app.route("/price")
@app.route("/stock")
@app.route("/a")
@app.route("/b")
@app.route("/c")
@app.route("/x")
def leaf() -> str:
    time.sleep(LEAF_SLEEP_S)
    return "ok"
