"""``--html`` reports of a real self-calling app opened in headless Chromium (Debian's package).

The app: a Python HTTP server whose /work handler calls its own /leaf N times over loopback (a new
connection each), and which holds one keep-alive connection to itself (so ``map`` sees a self-call
right now). Its comm is hostile (``<script>x`` + ESC) to prove host text renders as text.

Chromium runs with every network request sent to a dead loopback proxy and names resolved to nothing
(no traffic leaves the host); the net log tells which requests the *page* started (initiator of the
page, not Chromium's own update checks), and ``--enable-logging=stderr`` prints console messages.
A bad page (an external image and a console.error) proves both checks can fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from procs import python_child, run_loopscope

pytestmark = [pytest.mark.linux]

ARTIFACTS = Path(__file__).parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE_COMM = "<script>x\x1b"

SELF_APP = """
import http.client, http.server, json, sys, threading
with open("/proc/self/comm", "w") as fh:  # the app's name, inherited by its threads
    fh.write(sys.argv[1] if len(sys.argv) > 1 else COMM)
N = CALLS

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/work"):
            for _ in range(N):
                c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
                c.request("GET", "/leaf", headers={"Connection": "close"})
                c.getresponse().read()
                c.close()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
PORT = srv.server_address[1]
threading.Thread(target=srv.serve_forever, daemon=True).start()
held = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)  # a keep-alive self-connection
held.request("GET", "/leaf")
held.getresponse().read()
print(json.dumps({"port": PORT}), flush=True)
"""


def self_app_code(comm: str, calls: int = 3) -> str:
    """The app's source with its comm and calls per external request filled in."""
    return SELF_APP.replace("COMM", repr(comm)).replace("CALLS", str(calls))


@contextmanager
def self_calling_app(comm: str, calls: int = 3) -> Iterator[int]:
    """Start the app; yield its port."""
    with python_child(self_app_code(comm, calls)) as (_proc, info):
        yield int(info["port"])


@contextmanager
def load(port: int, rate_per_s: float = 20.0) -> Iterator[list[int]]:
    """External requests to /work at ``rate_per_s`` from this process until the block ends; yields a
    one-item list with the count sent."""
    stop = threading.Event()
    sent = [0]

    def run() -> None:
        while not stop.wait(1 / rate_per_s):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/work", timeout=5) as r:
                r.read()
            sent[0] += 1

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield sent
    finally:
        stop.set()
        t.join(10)


@dataclass
class Page:
    """What Chromium made of a file."""

    dom: str
    """The DOM after parsing, serialised."""
    console: list[str]
    """Console messages (CONSOLE log lines)."""
    requests: list[str]
    """URLs the page itself asked for."""


def _chromium(tmp: Path, url: str, *action: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp / f"profile-{time.monotonic_ns()}"
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--proxy-server=http://127.0.0.1:9",  # any request dies on loopback
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=3000",
            *action,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def open_page(path: Path, tmp: Path) -> Page:
    """Load ``path`` in headless Chromium: the DOM, console messages and the page's own requests."""
    netlog = tmp / f"net-{time.monotonic_ns()}.json"
    done = _chromium(tmp, path.resolve().as_uri(), f"--log-net-log={netlog}", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    log = json.loads(netlog.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    requests = [
        e["params"]["url"]
        for e in log["events"]
        if names.get(e["type"]) == "URL_REQUEST_START_JOB"
        and "url" in e.get("params", {})
        and e.get("params", {}).get("initiator")
        != "not an origin"  # Chromium's own, not the page's
    ]
    return Page(dom=done.stdout, console=console, requests=requests)


def screenshot(path: Path, out: Path, tmp: Path, *, height: int = 2200) -> Path:
    """A PNG of the page, 1280 px wide."""
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _chromium(
        tmp, path.resolve().as_uri(), f"--screenshot={out}", f"--window-size=1280,{height}"
    )
    assert done.returncode == 0 and out.exists(), done.stderr[-2000:]
    return out


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


@needs_chromium
def test_checks_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><p>x</p><img src="http://192.0.2.1/x.png">'
        '<script>console.error("boom")</script>'
    )
    page = open_page(bad, tmp_path)
    assert page.requests == ["http://192.0.2.1/x.png"]
    assert any('"boom"' in line for line in page.console)


@needs_chromium
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="eBPF names the client pid of short connections")
def test_watch_html_of_a_self_calling_app(tmp_path: Path) -> None:
    out = tmp_path / "watch.html"
    plot = tmp_path / "watch.png"
    with self_calling_app(HOSTILE_COMM) as port, load(port) as sent:
        time.sleep(0.3)
        done = run_loopscope(
            "watch",
            "--duration",
            "4",
            "--port",
            str(port),
            "--html",
            str(out),
            "--plot",
            str(plot),
            "--json",
        )
    assert done.returncode in (0, 1), done.stderr
    assert f"HTML report: {out}" in done.stderr.replace("\n", "")
    assert sent[0] >= 20
    report = json.loads(done.stdout)
    (app,) = report["apps"]
    self_edge = next(e for e in report["edges"] if e["self_call"])
    assert self_edge["connections"] >= 3 * 20 * 0.8

    page = open_page(out, tmp_path)
    assert page.console == [] and page.requests == []
    dom = page.dom
    assert dom.lower().count("<script") == 0
    label = app["name"].replace("\x1b", "\\x1b").replace("<", "&lt;").replace(">", "&gt;")
    assert label.startswith("&lt;script&gt;x\\x1b[")
    # the picture: one node per app with its label, the self-call loop, the findings table
    graph = dom[dom.index('<section class="graph"') : dom.index("</section>")]
    assert graph.count(label) >= 2  # the node's title and text
    assert 'class="edge edge self-call"' in graph or 'class="edge self-call"' in graph
    assert f":{port} " in graph
    findings = dom[dom.index('<table id="findings">') :]
    assert "SELF_CALL_ON_HOT_PATH" in findings and "SELF_CALL" in findings
    assert '<table id="apps">' in dom and '<tr class="hot">' in dom
    assert "watch --duration 4" in dom and 'id="host"' in dom
    shot = screenshot(out, ARTIFACTS / "html_report_watch.png", tmp_path)
    assert shot.stat().st_size > 20_000
    assert plot.read_bytes()[:4] == b"\x89PNG"


@needs_chromium
def test_map_html_fallback_layout_without_graphviz(tmp_path: Path) -> None:
    out = tmp_path / "map.html"
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    with self_calling_app("selfcaller"):
        done = subprocess.run(
            [sys.executable, "-m", "loopscope", "map", "--html", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PATH": str(empty_bin)},  # no `dot`: the pure layout draws it
            check=False,
        )
    assert done.returncode in (0, 1), done.stderr
    page = open_page(out, tmp_path)
    assert page.console == [] and page.requests == []
    assert 'class="call-graph fallback"' in page.dom
    assert "circular fallback" in page.dom
    graph = page.dom[page.dom.index('<section class="graph"') : page.dom.index("</section>")]
    assert '<g class="edge self-call">' in graph and "selfcaller[" in graph
    screenshot(out, ARTIFACTS / "html_report_map_fallback.png", tmp_path)
