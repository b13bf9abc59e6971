"""The compiled engine (rr.c through ctypes) on real sockets: socketpairs and UDP on 127.0.0.1.

Every test that needs the compiler skips without one; the fallback tests run everywhere.
"""

import ctypes
import errno
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import threading
import time
from importlib import resources

import pytest

from loopscope.analysis.bench.results import Engine
from loopscope.bench.native import (
    CFLAGS,
    CHUNK_SAMPLES,
    NATIVE_MAX_MESSAGE_BYTES,
    RR_EOF_CODE,
    PeerClosed,
    close_native,
    compiler_command,
    load_native,
    resolve_engine,
)
from loopscope.bench.server import MAX_MESSAGE_BYTES
from loopscope.errors import BackendUnavailable

pytestmark = pytest.mark.linux
HAVE_CC = shutil.which(compiler_command()[0]) is not None
needs_cc = pytest.mark.skipif(not HAVE_CC, reason="needs a C compiler (gcc, libc6-dev)")
FAR_NS = 1 << 62


def _echo_thread(lib, sock, size):
    """ls_echo on one end of a socketpair, in a thread (ctypes releases the GIL)."""
    result = {}

    def run():
        try:
            lib.echo(sock.fileno(), size)
            result["rc"] = 0
        except OSError as exc:
            result["rc"] = -exc.errno

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


@needs_cc
def test_rr_c_compiles_without_a_warning(tmp_path):
    src = resources.files("loopscope.bench").joinpath("rr.c")
    out = subprocess.run(
        [*compiler_command(), *CFLAGS, "-Werror", "-o", str(tmp_path / "rr.so"), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr


@needs_cc
def test_built_once_per_process_in_a_private_directory():
    lib = load_native()
    assert load_native() is lib
    folder = os.path.dirname(lib.path)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert NATIVE_MAX_MESSAGE_BYTES == MAX_MESSAGE_BYTES
    close_native()
    assert not os.path.exists(folder)
    again = load_native()
    assert again is not lib and os.path.exists(again.path)


@needs_cc
@pytest.mark.parametrize("size", [1, 64, 70_000])
def test_socketpair_echo_gives_count_positive_samples(size):
    lib = load_native()
    client, server = socket.socketpair()
    with client, server:
        t, result = _echo_thread(lib, server, size)
        lat = lib.rr_timed(client.fileno(), b"q" * size, 500, FAR_NS)
        assert len(lat) == 500 and all(v > 0 for v in lat)
        client.shutdown(socket.SHUT_WR)  # EOF: the echo loop ends with 0
        t.join(5)
        assert not t.is_alive() and result == {"rc": 0}


@needs_cc
def test_more_than_one_chunk_and_the_deadline():
    lib = load_native()
    client, server = socket.socketpair()
    with client, server:
        t, _ = _echo_thread(lib, server, 8)
        lat = lib.rr_timed(client.fileno(), b"q" * 8, CHUNK_SAMPLES + 7, FAR_NS)
        assert len(lat) == CHUNK_SAMPLES + 7 and min(lat) > 0
        # a deadline already passed: one round trip, then the loop stops (the Python engine's rule)
        assert len(lib.rr_timed(client.fileno(), b"q" * 8, 1000, time.perf_counter_ns())) == 1
        assert lib.rr_timed(client.fileno(), b"q" * 8, 0, FAR_NS) == []
        client.shutdown(socket.SHUT_WR)
        t.join(5)


@needs_cc
def test_eof_from_the_server_is_its_own_code():
    lib = load_native()
    client, server = socket.socketpair()
    with client:
        server.close()  # the server went away
        buf = (ctypes.c_longlong * 4)()
        rc = lib._lib.ls_rr_timed(client.fileno(), b"qqqq", 4, 4, FAR_NS, buf)
        # a write to a closed socketpair fails with EPIPE; a read after a one-way close sees EOF
        assert rc in (RR_EOF_CODE, -errno.EPIPE)
    client, server = socket.socketpair()
    with client, server:
        got = []

        def read_then_close():
            got.append(server.recv(4))
            server.close()

        t = threading.Thread(target=read_then_close, daemon=True)
        t.start()
        rc = lib._lib.ls_rr_timed(client.fileno(), b"qqqq", 4, 4, FAR_NS, buf)
        t.join(5)
        assert got == [b"qqqq"] and rc == RR_EOF_CODE < -4095
    client, server = socket.socketpair()
    with client, server:
        t = threading.Thread(target=lambda: (server.recv(4), server.shutdown(socket.SHUT_WR)))
        t.start()
        with pytest.raises(PeerClosed):
            lib.rr_timed(client.fileno(), b"qqqq", 4, FAR_NS)
        t.join(5)


@needs_cc
def test_bounds_are_checked_on_both_sides():
    lib = load_native()
    raw = lib._lib
    buf = (ctypes.c_longlong * 1)()
    client, server = socket.socketpair()
    with client, server:
        fd = client.fileno()
        assert raw.ls_rr_timed(fd, b"q", 0, 1, FAR_NS, buf) == -errno.EINVAL
        assert raw.ls_rr_timed(fd, b"q", NATIVE_MAX_MESSAGE_BYTES + 1, 1, FAR_NS, buf) == -22
        assert raw.ls_rr_timed(fd, b"q", 1, -1, FAR_NS, buf) == -errno.EINVAL
        assert raw.ls_rr_timed(fd, b"q", 1, 1, FAR_NS, None) == -errno.EINVAL
        assert raw.ls_rr_timed(-1, b"q", 1, 1, FAR_NS, buf) == -errno.EINVAL
        assert raw.ls_echo(fd, 0) == -errno.EINVAL
        assert raw.ls_call_timed(1, -5, FAR_NS, buf) == -errno.EINVAL
        with pytest.raises(ValueError):
            lib.rr_timed(fd, b"", 1, FAR_NS)
        with pytest.raises(ValueError):
            lib.rr_timed(fd, b"q", -1, FAR_NS)
        with pytest.raises(ValueError):
            lib.call_timed(NATIVE_MAX_MESSAGE_BYTES + 1, 1, FAR_NS)
    with pytest.raises(OSError) as info:  # a closed fd: EBADF from getsockopt, as an OSError
        lib.rr_timed(fd, b"q", 1, FAR_NS)
    assert info.value.errno == errno.EBADF


@needs_cc
def test_socket_timeout_is_an_oserror_eagain():
    lib = load_native()
    client, server = socket.socketpair()
    with client, server:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 50_000))
        with pytest.raises(BlockingIOError):  # nobody answers: SO_RCVTIMEO expires
            lib.rr_timed(client.fileno(), b"q", 1, FAR_NS)


@needs_cc
def test_udp_echo_and_connected_datagram_round_trips():
    lib = load_native()
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    threading.Thread(target=lambda: _udp(lib, srv), daemon=True).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as cl:
        cl.connect(srv.getsockname())
        lat = lib.rr_timed(cl.fileno(), b"q" * 64, 200, FAR_NS)
    assert len(lat) == 200 and all(v > 0 for v in lat)


def _udp(lib, sock):
    try:
        lib.udp_echo(sock.fileno())
    except OSError:
        pass  # the test is over and its socket gone


@needs_cc
def test_in_process_baseline_and_clock():
    lib = load_native()
    lat = lib.call_timed(1024, 300, FAR_NS)
    assert len(lat) == 300 and all(v > 0 for v in lat)
    assert 0 < lib.clock_overhead_ns() < 10_000


def test_no_compiler_is_a_typed_one_line_error_and_auto_falls_back(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(BackendUnavailable) as info:
        load_native()
    assert "no C compiler '/nonexistent/cc'" in str(info.value)
    assert "\n" not in str(info.value)
    engine, reason = resolve_engine(Engine.AUTO)
    assert engine is Engine.PYTHON and "no C compiler" in reason
    with pytest.raises(BackendUnavailable, match="--engine native"):
        resolve_engine(Engine.NATIVE)
    assert resolve_engine(Engine.PYTHON) == (Engine.PYTHON, None)


def test_a_compiler_that_fails_is_a_typed_error(monkeypatch):
    monkeypatch.setenv("CC", "false")
    with pytest.raises(BackendUnavailable, match=r"failed on rr\.c"):
        load_native()


def _invoke(*args, env):
    from typer.testing import CliRunner

    from loopscope.cli.app import app

    return CliRunner().invoke(app, ["bench", *args], env=env)


SMALL = ["--paths", "call,tcp4", "--sizes", "64", "--count", "20", "--warmup", "2"]


def test_cli_auto_without_compiler_reports_python_and_why():
    r = _invoke(*SMALL, "--no-throughput", "--json", env={"CC": "/nonexistent"})
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)["report"]
    assert report["config"]["engine"] == "auto"
    assert report["engine"] == "python" and report["server_engine"] == "python"
    assert "no C compiler '/nonexistent'" in report["engine_reason"]
    assert [c["engine"] for c in report["cells"]] == ["python", "python"]
    assert report["native_timer_overhead_ns"] is None


def test_cli_native_without_compiler_is_one_line_exit_2():
    r = _invoke(*SMALL, "--engine", "native", env={"CC": "/nonexistent"})
    assert r.exit_code == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1
    assert "--engine native: no C compiler" in r.stderr and "Traceback" not in r.stderr
