"""``loopscope top`` driven in a real terminal (tmux, 80x24) on a real self-calling app: the self-call
row shows, the keys work, ``q`` quits and nothing is left behind (the process is gone, so its eBPF
program, netlink sockets and threads are too; the tmux session ends with it). As root, ``n`` moves the
screen into a namespace the test makes with ``ip netns add`` (and deletes), where the app runs.

tmux runs on its own socket (``-L``), so the test never touches another tmux server.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from procs import python_child
from test_html_report import ARTIFACTS, load, self_app_code, self_calling_app

pytestmark = [
    pytest.mark.linux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Tmux:
    """One tmux server on a private socket with one 80x24 session."""

    def __init__(self, name: str) -> None:
        self.socket = name
        self.session = "top"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )

    def capture(self, *, ansi: bool = False) -> str:
        args = ["capture-pane", "-p", "-t", self.session, *(["-e"] if ansi else [])]
        return self.run(*args).stdout

    def wait_for(self, test: Callable[[str], bool], timeout_s: float = 20.0) -> str:
        deadline = time.monotonic() + timeout_s
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if test(screen):
                return screen
            time.sleep(0.25)
        raise AssertionError(f"screen never matched; last capture:\n{screen}")

    def alive(self) -> bool:
        return self.run("has-session", "-t", self.session).returncode == 0


def _runs_loopscope(pid: int) -> bool:
    """The pid is a live process running loopscope (a zombie has an empty cmdline; a reused pid runs
    something else)."""
    try:
        return b"loopscope" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


@contextmanager
def tmux_top(*top_args: str) -> Iterator[Tmux]:
    t = Tmux(f"loopscope-test-{os.getpid()}")
    cmd = shlex.join([sys.executable, "-m", "loopscope", "top", *top_args])
    started = t.run(
        "new-session",
        "-d",
        "-s",
        t.session,
        "-x",
        "80",
        "-y",
        "24",
        f"env TERM=xterm-256color COLORTERM=truecolor {cmd}; sleep 0.1",
    )
    assert started.returncode == 0, started.stderr
    try:
        yield t
    finally:
        t.run("kill-server")  # the server this test started, by its socket


def test_top_shows_the_self_call_and_quits_clean() -> None:
    with (
        self_calling_app("selfcaller") as port,
        load(port, rate_per_s=15),
        tmux_top("--port", str(port), "--refresh", "0.5", "--window", "5") as t,
    ):
        pane_pid = int(t.run("display", "-p", "-t", t.session, "#{pane_pid}").stdout.strip())

        def self_row(screen: str) -> bool:
            window = re.search(r"last (\d+) s", screen)  # a few seconds of traffic in the window
            return (
                window is not None
                and int(window.group(1)) >= 3
                and any("selfcaller[" in line and "SELF" in line for line in screen.splitlines())
            )

        screen = t.wait_for(self_row, timeout_s=30)
        lines = screen.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        edge = next(line for line in lines if "selfcaller[" in line and "SELF" in line)
        assert "selfcaller[" in edge and f":{port}" in edge
        assert any(line.startswith("sources:") or "sources:" in line for line in lines)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "top_80x24.txt").write_text(screen)
        (ARTIFACTS / "top_80x24.ansi").write_text(t.capture(ansi=True))
        # apps pane: the app with a self-call rate and an amplification near 3
        app_line = next(line for line in lines if line.lstrip().startswith("selfcaller["))
        assert str(port) in app_line

        t.run("send-keys", "-t", t.session, "?")
        t.wait_for(lambda s: "q  quit" in s)
        t.run("send-keys", "-t", t.session, "Escape")
        t.wait_for(lambda s: "q  quit" not in s)
        t.run("send-keys", "-t", t.session, "s")
        t.wait_for(lambda s: "sort self" in s)
        t.run("send-keys", "-t", t.session, "p")
        t.wait_for(lambda s: "PAUSED" in s)
        t.run("send-keys", "-t", t.session, "p")
        t.wait_for(lambda s: "PAUSED" not in s)

        t.run("send-keys", "-t", t.session, "q")
        deadline = time.monotonic() + 15
        while t.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not t.alive(), t.capture()
        assert not _runs_loopscope(pane_pid)
        # no loopscope top of ours is left (its eBPF program went with its file descriptors)
        mine = subprocess.run(
            ["pgrep", "-f", f"loopscope top --port {port}"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert mine.stdout.strip() == ""


LOADER = """
import json, threading, time, urllib.request
def run():
    while True:
        time.sleep(1 / 15)
        with urllib.request.urlopen("http://127.0.0.1:PORT/work", timeout=5) as r:
            r.read()
threading.Thread(target=run, daemon=True).start()
print(json.dumps({}), flush=True)
"""


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh namespace with lo up, deleted after the test."""
    name = f"ls-top-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _press(t: Tmux, *keys: str) -> None:
    for key in keys:
        t.run("send-keys", "-t", t.session, key)


@pytest.mark.root
@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="ip netns add needs root")
def test_n_switches_into_a_namespace_and_sees_its_self_call(netns: str) -> None:
    inside = ["ip", "netns", "exec", netns]
    with (
        python_child(self_app_code("nsselfcall"), prefix=inside) as (_, info),
        python_child(LOADER.replace("PORT", str(info["port"])), prefix=inside),
        tmux_top("--refresh", "0.5", "--window", "5") as t,
    ):
        pane_pid = int(t.run("display", "-p", "-t", t.session, "#{pane_pid}").stdout.strip())
        t.wait_for(lambda s: "loopscope top (host) last" in s, timeout_s=30)
        assert "nsselfcall[" not in t.capture()  # its loopback is not the host's
        _press(t, "n")
        listing = t.wait_for(lambda s: "host  (now)" in s and netns in s).splitlines()
        now = next(k for k, line in enumerate(listing) if "host  (now)" in line)
        ours = next(k for k, line in enumerate(listing) if netns in line)
        _press(t, *["Down"] * (ours - now), "Enter")

        def self_row(screen: str) -> bool:
            return f"loopscope top ({netns}) last" in screen and any(
                "nsselfcall[" in line and "SELF" in line for line in screen.splitlines()
            )

        screen = t.wait_for(self_row, timeout_s=30)
        assert all(len(line) <= 80 for line in screen.splitlines())
        (ARTIFACTS / "top_netns_80x24.txt").parent.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "top_netns_80x24.txt").write_text(screen)

        _press(t, "q")
        deadline = time.monotonic() + 15
        while t.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not t.alive(), t.capture()
        assert not _runs_loopscope(pane_pid)
