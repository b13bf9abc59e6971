"""Live proof with Debian's real Prometheus (and promtool): a gunicorn app that calls itself 3 times per
request, a load generator with a known count, the exporter (``--http``) scraped every second. The
connection and HTTP request counters in Prometheus grow by exactly the known numbers, the amplification
rules give 3, their alerts fire, and every PromQL expression of the Grafana dashboard returns data. promtool checks the rules, runs their unit
tests and checks a real scrape.

Needs root (eBPF), gunicorn (pip: loopscope[lab]) and prometheus (Debian: prometheus).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from procs import stop_process
from test_exporter_cli import exporter, scrape
from test_watch_selfcall import APP, LOADGEN

pytestmark = [pytest.mark.linux, pytest.mark.root, pytest.mark.services]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "loopscope.rules.yml"
APP_NAME, LOADGEN_NAME = "ls-selfcall", "ls-loadgen"
PRCTL = "import ctypes; ctypes.CDLL(None).prctl(15, {!r}.encode(), 0, 0, 0)\n"
GUNICORN_CONF = f"def on_starting(server):\n    {PRCTL.format(APP_NAME).strip()}\n"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (Debian package: prometheus)")
    return path


@contextmanager
def selfcall_app(workers: int = 2, threads: int = 8) -> Iterator[int]:
    """The self-calling app of test_watch_selfcall under gunicorn, named ``ls-selfcall`` (comm set
    before the workers fork, so every worker and thread carries it), on 0.0.0.0:<ephemeral>."""
    if shutil.which("gunicorn") is None:
        pytest.skip("gunicorn not installed: pip install 'loopscope[lab]'")
    d = tempfile.mkdtemp(prefix="ls-exporter-app-")
    Path(d, "labapp.py").write_text(APP)
    Path(d, "conf.py").write_text(GUNICORN_CONF)
    lst = socket.socket()
    lst.bind(("0.0.0.0", 0))
    lst.listen(256)
    port = lst.getsockname()[1]
    fd = lst.fileno()
    os.set_inheritable(fd, True)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "-c", os.path.join(d, "conf.py"), "-k", "gthread"),
            *("-w", str(workers), "--threads", str(threads), "--bind", f"fd://{fd}"),
            *("--chdir", d, "labapp:app"),
        ],
        pass_fds=(fd,),
        env={**os.environ, "LAB_PORT": str(port), "PYTHONPATH": d},
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(d, "log"), "wb"),
    )
    lst.close()
    try:
        deadline = time.monotonic() + 20  # no warm-up request: it would count as external
        while len(psutil.Process(proc.pid).children()) < workers and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        yield port
    finally:
        stop_process(proc)
        shutil.rmtree(d, ignore_errors=True)


class Prom:
    """A running Prometheus and its HTTP API."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            doc = json.loads(resp.read())
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait(self, what: str, check: Callable[[], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.5)


@contextmanager
def prometheus(exporter_port: int) -> Iterator[Prom]:
    """Prometheus scraping the exporter every second, with a copy of the rules whose ``for:`` is 1s."""
    binary = _need("prometheus")
    d = tempfile.mkdtemp(prefix="ls-prom-")
    rules = re.sub(r"for: \w+", "for: 1s", RULES.read_text())
    Path(d, "rules.yml").write_text(rules)
    Path(d, "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{d}/rules.yml]\n"
        "scrape_configs:\n"
        "  - job_name: loopscope\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    proc = None
    try:
        for _ in range(5):  # a port outside the ephemeral range, retried if taken
            port = random.randint(20000, 29999)
            proc = subprocess.Popen(
                [
                    *(binary, f"--config.file={d}/prometheus.yml", f"--storage.tsdb.path={d}/data"),
                    *(f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(d, "log"), "wb"),
            )
            prom = Prom(port)
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"{prom.base}/-/ready", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.2)
            if proc.poll() is None:
                break
        assert proc is not None and proc.poll() is None, Path(d, "log").read_text()
        prom.wait("the first scrape", lambda: prom.value('up{job="loopscope"}') == 1.0)
        yield prom
    finally:
        if proc is not None:
            stop_process(proc)
        shutil.rmtree(d, ignore_errors=True)


def _load(port: int, requests: int, self_calls: int, rate: float) -> None:
    code = PRCTL.format(LOADGEN_NAME) + LOADGEN
    path = f"/work?n={self_calls}&host=127.0.0.1&mode=new"
    subprocess.run(
        [sys.executable, "-c", code, "127.0.0.1", str(port), path, str(requests), str(rate)],
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
    )


def _dashboard_exprs() -> list[str]:
    doc = json.loads((DEPLOY / "grafana" / "loopscope.json").read_text())
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def test_prometheus_sees_exact_counts_the_factor_the_alert_and_the_dashboard_data() -> None:
    # 200 requests x 3 self-calls: 600 self-calls in the 5m window is 2/s, above the alerts' 1/s. An
    # HTTP series starts at its first request (no zero sample before it, unlike the per-app
    # connection series), so rate() misses what came before its first scrape (up to ~90 here): 120
    # requests left the HTTP rate at ~1/s, and its alert did not fire in 1 run of 5.
    # Counts every 2 s (default 30 s): the ephemeral-port series of the dashboard appear with the
    # first count that sees the load's sockets, which must come before the dashboard check.
    requests, n = 200, 3
    app = f'app="{APP_NAME}"'
    with (
        selfcall_app() as port,
        exporter("--http", "--counts-interval", "2") as (_exp, eport),
        prometheus(eport) as prom,
    ):
        self_q = f'loopscope_app_connections_total{{{app},kind="self"}}'
        ext_q = f'loopscope_app_connections_total{{{app},kind="external"}}'
        prom.wait("the app's series", lambda: prom.value(self_q) is not None)
        assert prom.value("loopscope_exporter_http_capture_up") == 1
        time.sleep(2)  # a few samples at the baseline
        self0, ext0 = prom.value(self_q), prom.value(ext_q)
        assert self0 == 0.0 and ext0 == 0.0
        _load(port, requests, n, rate=30.0)
        prom.wait("the counts after the load", lambda: prom.value(self_q) == requests * n)
        time.sleep(2)  # nothing more arrives
        assert prom.value(self_q) == requests * n
        assert prom.value(ext_q) == requests
        edge = "loopscope_loopback_connections_total{{client_app={!r},server_app={!r},port={!r}}}"
        assert (
            prom.value(edge.format(LOADGEN_NAME, APP_NAME, str(port)).replace("'", '"')) == requests
        )
        assert (
            prom.value(edge.format(APP_NAME, APP_NAME, str(port)).replace("'", '"')) == requests * n
        )
        assert prom.value('loopscope_exporter_events_lost_total{reason="map_full"}') == 0
        http = (
            'sum(loopscope_http_requests_total{{client_app="{}",server_app="{}",port="{}",'
            'method="GET",self_call="{}"}})'
        )
        try:
            prom.wait(
                "the HTTP counts",
                lambda: prom.value(http.format(APP_NAME, APP_NAME, port, "true")) == requests * n,
            )
        except AssertionError as exc:  # say what was counted instead
            seen = prom.query(f'{{__name__=~"loopscope_(http|exporter_http).*",port=~"{port}|"}}')
            rows = [(r["metric"], r["value"][1]) for r in seen]
            raise AssertionError(f"{exc}: {rows}") from exc
        assert prom.value(http.format(LOADGEN_NAME, APP_NAME, port, "false")) == requests
        assert prom.value(http.format(APP_NAME, APP_NAME, port, "true")) == requests * n
        ok = 'sum(loopscope_http_responses_total{{server_app="{}",port="{}",code_class="2xx"}})'
        assert prom.value(ok.format(APP_NAME, port)) == requests * (n + 1)
        unknown = f'sum(loopscope_http_requests_total{{client_app="unknown",port="{port}"}})'
        assert prom.value(unknown) is None  # every client named
        factor = f"loopscope:app_self_call_amplification:ratio_rate5m{{{app}}}"
        prom.wait("factor 3", lambda: abs((prom.value(factor) or 0) - n) < 1e-9)
        http_factor = (
            f'loopscope:app_http_self_call_amplification:ratio_rate5m{{server_app="{APP_NAME}"}}'
        )
        # Not exact for the same reason: (600 - s0) / (200 - e0) with s0, e0 the series' first
        # samples. A drain cuts the packet stream anywhere, so s0 is 3 e0 minus up to 3 (the
        # self-calls of the request in flight): 3 + 3 / (200 - e0) at most, e0 ~ 30 at 30/s and a
        # drain every 0.5 s, but larger when CPU contention delays the drain. Allow that, plus 0.02
        # for rate()'s extrapolation of series that start inside the window.
        first = prom.query(
            http.format(LOADGEN_NAME, APP_NAME, port, "false")[4:-1] + "[10m]"  # raw samples
        )
        e0 = float(first[0]["values"][0][1]) if first else 0.0
        slack = n / max(requests - e0, 1) + 0.02
        try:
            prom.wait("HTTP factor 3", lambda: abs((prom.value(http_factor) or 0) - n) < slack)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {prom.value(http_factor)}, e0 {e0}") from exc

        def firing(name: str, label: str) -> bool:
            alerts = prom.get("/api/v1/alerts")["alerts"]
            return any(
                a["labels"].get("alertname") == name
                and a["labels"].get(label) == APP_NAME
                and a["state"] == "firing"
                for a in alerts
            )

        prom.wait(
            "the amplification alert firing",
            lambda: firing("LoopscopeSelfCallAmplificationHigh", "app"),
        )
        prom.wait(
            "the HTTP amplification alert firing",
            lambda: firing("LoopscopeHttpSelfCallAmplificationHigh", "server_app"),
        )
        empty = []
        for expr in _dashboard_exprs():
            concrete = expr.replace("$instance", ".*").replace("$__rate_interval", "1m")
            if not prom.query(concrete):
                empty.append(expr)
        assert empty == []


def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    promtool = _need("promtool")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(
        [promtool, "test", "rules", "loopscope.rules.test.yml"],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_promtool_check_metrics_passes_on_a_real_scrape() -> None:
    promtool = _need("promtool")
    with exporter() as (_proc, port):
        text = scrape(port)
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
