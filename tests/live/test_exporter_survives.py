"""Live: ``loopscope exporter`` survives what a host does to it: the watched app restarting (counters
keep increasing under the same app name, new pids), a scrape during a burst of 20,000 loopback
connections (answers, bounded, every connection counted), two exporters started at once on different
ports (both count everything, both detach), and a namespace disappearing under ``--all-netns``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loopscope.backends.linux.bpf.sockops import count_attached_sockops
from tests.live.test_exporter_cli import _cgroup, exporter, scrape

pytestmark = [pytest.mark.linux, pytest.mark.root]

# A named server: sets its comm, listens on 127.0.0.1:PORT (0: any), prints the port, then accepts
# and closes until stdin closes.
SERVER = r"""
import ctypes, socket, sys, threading
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[2]))); s.listen(4096)
print(s.getsockname()[1], flush=True)
def serve():
    while True:
        c, _ = s.accept(); c.close()
threading.Thread(target=serve, daemon=True).start()
sys.stdin.read()
"""

# A named client: N connections to PORT, one after the other.
CLIENT = r"""
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
for _ in range(int(sys.argv[3])):
    socket.create_connection(("127.0.0.1", int(sys.argv[2]))).close()
"""


@contextmanager
def server(name: str, port: int = 0, prefix: tuple[str, ...] = ()) -> Iterator[tuple[int, int]]:
    """A named server; yields (port, pid)."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-c", SERVER, name, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline()), proc.pid
    finally:
        proc.kill()
        proc.wait(10)


def connect(name: str, port: int, n: int, prefix: tuple[str, ...] = ()) -> None:
    subprocess.run(
        [*prefix, sys.executable, "-c", CLIENT, name, str(port), str(n)], check=True, timeout=300
    )


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(s.labels), s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == name
    ]


def edge(text: str, client: str, port: int) -> float:
    return sum(
        v
        for labels, v in samples(text, "loopscope_loopback_connections_total")
        if labels["client_app"] == client and labels["port"] == str(port)
    )


def test_the_watched_app_restarting_keeps_its_counters_increasing() -> None:
    with exporter() as (proc, eport):
        with server("ls-restart-app") as (port, pid1):
            connect("ls-restart-cli", port, 5)
            first = scrape(eport)
        with server("ls-restart-app", port) as (port2, pid2):  # restarted: same port, new pid
            assert port2 == port and pid2 != pid1
            connect("ls-restart-cli", port, 7)
            second = scrape(eport)
        assert proc.poll() is None
    assert edge(first, "ls-restart-cli", port) == 5
    assert edge(second, "ls-restart-cli", port) == 12  # kept increasing, same series
    apps = {
        labels["server_app"]
        for labels, _ in samples(second, "loopscope_loopback_connections_total")
        if labels["port"] == str(port)
    }
    assert apps == {"ls-restart-app"}  # the new pid is the same app
    infos = [
        lab for lab, _ in samples(second, "loopscope_listener_info") if lab["port"] == str(port)
    ]
    assert [lab["app"] for lab in infos] == ["ls-restart-app"]


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"ls-exp-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


def test_a_scrape_during_a_burst_of_20000_connections(netns: str) -> None:
    inside = ("ip", "netns", "exec", netns)  # the burst's TIME_WAIT stays out of the host
    with (
        exporter("--all-netns", "--counts-interval", "0") as (proc, eport),
        server("ls-burst-srv", prefix=inside) as (port, _pid),
    ):
        burst = subprocess.Popen(
            [*inside, sys.executable, "-c", CLIENT, "ls-burst", str(port), "20000"]
        )
        durations: list[float] = []
        try:
            while burst.poll() is None:
                t0 = time.monotonic()
                text = scrape(eport)
                durations.append(time.monotonic() - t0)
                assert samples(text, "loopscope_exporter_source_info")
        finally:
            assert burst.wait(300) == 0
        final = scrape(eport)
        assert proc.poll() is None
    print(f"{len(durations)} scrapes during the burst, max {max(durations or [0]):.3f} s")
    assert durations, "the burst ended before the first scrape"
    assert max(durations) < 10  # bounded: a Prometheus scrape_timeout is 10 s
    assert edge(final, "ls-burst", port) == 20000  # every connection counted in the kernel
    assert [v for _, v in samples(final, "loopscope_exporter_events_lost_total")] == [0.0]


def test_two_exporters_started_at_once_both_count_everything() -> None:
    root = _cgroup()
    before = count_attached_sockops(root)
    with exporter() as (p1, port1), exporter() as (p2, port2):
        assert port1 != port2
        assert count_attached_sockops(root) == before + 2  # each loads its own program
        with server("ls-two-srv") as (port, _pid):
            connect("ls-two-cli", port, 4)
            texts = [scrape(port1), scrape(port2)]
        assert [edge(t, "ls-two-cli", port) for t in texts] == [4.0, 4.0]
        p1.terminate()
        p2.terminate()
        assert p1.wait(15) == 0 and p2.wait(15) == 0
    assert count_attached_sockops(root) == before


def test_a_namespace_disappearing_under_all_netns(netns: str) -> None:
    inside = ("ip", "netns", "exec", netns)
    with exporter("--all-netns", "--counts-interval", "0") as (proc, eport):
        with server("ls-vanish-srv", prefix=inside) as (port, _pid):
            text = scrape(eport)
            ups = {lab["netns"] for lab, _ in samples(text, "loopscope_loopback_up")}
            assert netns in ups
            listeners = samples(text, "loopscope_listener_info")
            assert any(lab["netns"] == netns and lab["port"] == str(port) for lab, _ in listeners)
        subprocess.run(["ip", "netns", "del", netns], check=True)
        for _ in range(3):  # the next scrapes answer, without the namespace
            text = scrape(eport)
            ups = {lab["netns"] for lab, _ in samples(text, "loopscope_loopback_up")}
            assert netns not in ups and "host" in ups
        assert proc.poll() is None
