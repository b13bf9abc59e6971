"""Frames for ``loopscope top``: from recorded data, and from a live session on its own threads."""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from loopscope.errors import LoopscopeError
from loopscope.tui.source import (
    NetnsChoice,
    SessionSource,
    SessionSwitcher,
    StaticSource,
    list_namespaces,
    make_frame,
)
from loopscope.watch.session import WatchOptions


def _data() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "tui_watch_data", Path(__file__).with_name("watch_data.py")
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_make_frame_and_static_source() -> None:
    frame = make_frame(_data().self_calling_window(), ports=(8080,))
    assert [a.name for a in frame.report.apps] == ["gunicorn[10,11]"]  # filtered to the port
    assert frame.findings[0].code == "SELF_CALL_ON_HOT_PATH" and frame.compute_s > 0
    assert frame.timeline.bucket_s == 1.0 and len(frame.timeline.starts_s) == 10
    src = StaticSource(frame)
    assert src.latest() is frame and src.error is None
    src.set_paused(True)
    paused = src.latest()
    assert paused is not None and paused.paused and paused.report is frame.report
    src.close()
    assert src.closed


@pytest.mark.linux
def test_session_source_live_self_call() -> None:
    """This process listens on 127.0.0.1:0 and connects to itself: a self-call edge of our own app."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        stop = threading.Event()

        def serve() -> None:
            srv.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = srv.accept()
                except TimeoutError:
                    continue
                conn.close()

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        source = SessionSource(
            WatchOptions(ebpf=os.geteuid() == 0, snapshot_interval_s=0.5),
            ports=(port,),
            window_s=60.0,
            refresh_s=0.5,
        )
        try:
            for _ in range(30):
                with socket.create_connection(("127.0.0.1", port)) as c:
                    c.recv(1)
                time.sleep(0.02)
            deadline = time.monotonic() + 30  # a busy host takes longer to analyse
            edge = None
            frame = None
            while time.monotonic() < deadline and (edge is None or edge.connections < 30):
                time.sleep(0.5)
                frame = source.latest()
                if frame is not None:
                    edge = next((e for e in frame.report.edges if e.port == port), None)
            assert edge is not None, (source.error, frame)
            assert edge.connections == 30  # every connection made, none twice
            if os.geteuid() == 0:  # the client pid (eBPF) makes it a self-call of this process
                assert edge.self_call and os.getpid() in edge.client_pids
            assert source.polls >= 2 and source.frames >= 1
        finally:
            source.close()
            stop.set()
            server.join()
    names = {t.name for t in threading.enumerate()}
    assert not {"top-collector", "top-analysis"} & names


def test_session_source_bad_namespace() -> None:
    with pytest.raises(LoopscopeError):
        SessionSource(WatchOptions(netns="no-such-namespace-xyz"))


@pytest.mark.linux
def test_list_namespaces_host_first_then_processes(tmp_path: Path) -> None:
    """A fake /proc: pids 7 and 9 share one namespace file (a hard link), 8 has its own, 10 has none."""
    for pid in ("7", "8", "9", "10"):
        (tmp_path / pid / "ns").mkdir(parents=True)
    (tmp_path / "7" / "ns" / "net").write_text("")
    os.link(tmp_path / "7" / "ns" / "net", tmp_path / "9" / "ns" / "net")
    (tmp_path / "8" / "ns" / "net").write_text("")
    (tmp_path / "self").mkdir()
    choices = list_namespaces(str(tmp_path))
    assert choices[0] == NetnsChoice(spec=None, label="host")
    by_pid = [c for c in choices if c.label.startswith("pid ")]
    assert by_pid == [
        NetnsChoice(spec="/proc/7/ns/net", label="pid 7"),
        NetnsChoice(spec="/proc/8/ns/net", label="pid 8"),
    ]
    real = list_namespaces()
    assert real[0].label == "host" and len({c.label for c in real}) == len(real)


def test_session_switcher_refuses_a_missing_namespace() -> None:
    switcher = SessionSwitcher(WatchOptions(ebpf=False), window_s=5.0)
    with pytest.raises(LoopscopeError, match="no-such-namespace-xyz"):
        switcher.open("no-such-namespace-xyz")
    assert not {"top-collector", "top-analysis"} & {t.name for t in threading.enumerate()}
