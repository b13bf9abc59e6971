"""The compiled engine of ``loopscope bench``: ``rr.c`` built once per process and loaded with ctypes.

Why: with the round trip already down to one clock read, one ``os.write`` and one ``os.read``, what
is left of loopscope's overhead over sockperf is the interpreter on both ends (~3 us of a ~15 us TCP
round trip on one core). ``rr.c`` runs the timed client loop (:meth:`NativeLib.rr_timed`), the
server's echo loops (:meth:`NativeLib.echo`, :meth:`NativeLib.udp_echo`) and the in-process
baseline (:meth:`NativeLib.call_timed`) in C, with the same method as the Python engine: one
``CLOCK_MONOTONIC`` read per round trip (the clock of ``time.perf_counter_ns`` on Linux).

The source ships as package data; :func:`load_native` compiles it with ``$CC`` (default ``cc``,
``-O2 -shared -fPIC``) into a private :func:`tempfile.mkdtemp` directory (mode 0700, removed at exit
or by :func:`close_native`). ctypes releases the GIL around every call, so a server thread blocked in
:meth:`NativeLib.echo` does not stop the other threads. No compiler, a failed compile or a library
that does not load: :class:`~loopscope.errors.BackendUnavailable` with a one-line reason, and the
caller falls back to the Python engine (:func:`resolve_engine`).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING

from loopscope.analysis.bench.results import Engine
from loopscope.errors import BackendUnavailable, LoopscopeError

__all__ = [
    "CFLAGS",
    "CHUNK_SAMPLES",
    "COMPILE_TIMEOUT_S",
    "NATIVE_MAX_MESSAGE_BYTES",
    "RR_EOF_CODE",
    "NativeLib",
    "PeerClosed",
    "close_native",
    "compiler_command",
    "load_native",
    "resolve_engine",
]

CFLAGS: tuple[str, ...] = ("-O2", "-shared", "-fPIC", "-Wall", "-Wextra")
"""Compiler flags; ``rr.c`` compiles without a warning under them."""
COMPILE_TIMEOUT_S = 60.0
"""Longest wait for the compiler (a busy 2-CPU machine builds ``rr.c`` in well under a second)."""
NATIVE_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest message ``rr.c`` accepts (``LS_MAX_MESSAGE_BYTES``, checked when loading)."""
CHUNK_SAMPLES = 1 << 16
"""Round trips per C call of a timed loop: bounds the sample buffer (512 KiB) whatever the count."""
RR_EOF_CODE = -1000000
"""``LS_RR_EOF`` of ``rr.c``: what its loops return when the peer closed, below every ``-errno``
(checked when loading)."""

if TYPE_CHECKING:
    _Samples = ctypes.Array[ctypes.c_longlong]
    _TimedCall = Callable[[int, int, _Samples], int]


class PeerClosed(LoopscopeError):
    """The peer closed the connection in the middle of the compiled round-trip loop."""


def _check(rc: int) -> int:
    """``rc`` when >= 0; raise for the C side's error codes.

    Raises:
        PeerClosed: ``rc`` is ``LS_RR_EOF``.
        OSError: ``rc`` is ``-errno`` (e.g. ``BlockingIOError`` for EAGAIN: a socket timeout expired).
    """
    if rc >= 0:
        return rc
    if rc == RR_EOF_CODE:
        raise PeerClosed("peer closed the connection")
    raise OSError(-rc, os.strerror(-rc))


class NativeLib:
    """``rr.c`` loaded with ctypes, with typed wrappers around its entry points.

    Args:
        path: the shared object to load.

    Attributes:
        path: the shared object file (the bench server process loads the same file).

    Raises:
        OSError: the file does not load (``ctypes.CDLL``).
        BackendUnavailable: it loads but is not the ``rr.c`` of this package (constants differ).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        lib = ctypes.CDLL(path)
        c_long, c_ll, c_int = ctypes.c_long, ctypes.c_longlong, ctypes.c_int
        ll_ptr = ctypes.POINTER(c_ll)
        lib.ls_max_message_bytes.argtypes = []
        lib.ls_max_message_bytes.restype = c_long
        lib.ls_rr_eof.argtypes = []
        lib.ls_rr_eof.restype = c_long
        lib.ls_rr_timed.argtypes = [c_int, ctypes.c_char_p, c_long, c_long, c_ll, ll_ptr]
        lib.ls_rr_timed.restype = c_long
        lib.ls_echo.argtypes = [c_int, c_long]
        lib.ls_echo.restype = c_long
        lib.ls_udp_echo.argtypes = [c_int]
        lib.ls_udp_echo.restype = c_long
        lib.ls_call_timed.argtypes = [c_long, c_long, c_ll, ll_ptr]
        lib.ls_call_timed.restype = c_long
        lib.ls_clock_overhead_ns.argtypes = [c_long]
        lib.ls_clock_overhead_ns.restype = c_ll
        if lib.ls_max_message_bytes() != NATIVE_MAX_MESSAGE_BYTES or lib.ls_rr_eof() != RR_EOF_CODE:
            raise BackendUnavailable(f"{path} does not match this loopscope's rr.c")
        self._lib = lib

    def _timed(self, call: _TimedCall, count: int, end_ns: int) -> list[int]:
        """Run ``call(n, end_ns, buffer)`` in chunks of :data:`CHUNK_SAMPLES` until ``count`` samples
        or the deadline; the Python between two chunks falls in no sample (each C call starts with
        its own clock read)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        out: list[int] = []
        if count == 0:
            return out
        buf = (ctypes.c_longlong * min(count, CHUNK_SAMPLES))()
        while len(out) < count:
            n = min(count - len(out), CHUNK_SAMPLES)
            done = _check(call(n, end_ns, buf))
            out.extend(buf[:done])
            if done < n or time.perf_counter_ns() > end_ns:
                break
        return out

    def rr_timed(self, fd: int, payload: bytes, count: int, end_ns: int) -> list[int]:
        """Up to ``count`` round trips of ``payload`` on the connected socket ``fd``, each one's ns.

        Stops once ``CLOCK_MONOTONIC`` (``time.perf_counter_ns``) passes ``end_ns``. Sample i is the
        time between the clock reads after round trips i-1 and i, as in the Python engine.

        Raises:
            ValueError: payload empty or above :data:`NATIVE_MAX_MESSAGE_BYTES`, count < 0.
            PeerClosed: the server closed the connection.
            OSError: a system call failed (EAGAIN after the socket's SO_RCVTIMEO/SO_SNDTIMEO).
        """
        size = len(payload)
        if not 1 <= size <= NATIVE_MAX_MESSAGE_BYTES:
            raise ValueError(f"payload of {size} bytes out of 1..{NATIVE_MAX_MESSAGE_BYTES}")
        rr = self._lib.ls_rr_timed

        def call(n: int, end: int, buf: _Samples) -> int:
            return int(rr(fd, payload, size, n, end, buf))

        return self._timed(call, count, end_ns)

    def call_timed(self, size_bytes: int, count: int, end_ns: int) -> list[int]:
        """Up to ``count`` calls of a non-inlined C handler copying a ready ``size_bytes`` response.

        The in-process baseline of the native engine, timed like :meth:`rr_timed`.

        Raises:
            ValueError: size out of 1..:data:`NATIVE_MAX_MESSAGE_BYTES`, count < 0.
            OSError: ENOMEM.
        """
        if not 1 <= size_bytes <= NATIVE_MAX_MESSAGE_BYTES:
            raise ValueError(f"size {size_bytes} out of 1..{NATIVE_MAX_MESSAGE_BYTES}")
        fn = self._lib.ls_call_timed

        def call(n: int, end: int, buf: _Samples) -> int:
            return int(fn(size_bytes, n, end, buf))

        return self._timed(call, count, end_ns)

    def echo(self, fd: int, size_bytes: int) -> None:
        """Serve the echo protocol on the connected stream socket ``fd`` until the peer closes.

        Raises:
            OSError: a system call failed (e.g. ECONNRESET), or EINVAL for a size out of bounds.
        """
        _check(int(self._lib.ls_echo(fd, size_bytes)))

    def udp_echo(self, fd: int) -> None:
        """Send every datagram arriving on ``fd`` back to its sender; returns only by raising.

        Raises:
            OSError: a system call failed.
        """
        _check(int(self._lib.ls_udp_echo(fd)))

    def clock_overhead_ns(self, samples: int = 1000) -> int:
        """Smallest back-to-back ``CLOCK_MONOTONIC`` difference in C, ns: in every native sample."""
        return _check(int(self._lib.ls_clock_overhead_ns(max(samples, 1))))


_LOADED: dict[str, NativeLib | BackendUnavailable] = {}
_DIRS: list[str] = []


def compiler_command() -> list[str]:
    """The C compiler command: ``$CC`` split like a shell would (``"ccache gcc"`` ok), else ``cc``."""
    return shlex.split(os.environ.get("CC", "").strip() or "cc")


def load_native(path: str | None = None) -> NativeLib:
    """The compiled engine: built from the packaged ``rr.c`` with :func:`compiler_command` (once per
    process and compiler, failures included), or loaded from ``path`` (an already built library).

    Raises:
        BackendUnavailable: no compiler, the compile failed, or the library does not load; the
            message is one line.
    """
    key = f"path:{path}" if path is not None else "cc:" + " ".join(compiler_command())
    got = _LOADED.get(key)
    if got is None:
        try:
            got = _load_file(path) if path is not None else _build(compiler_command())
        except BackendUnavailable as exc:
            got = exc
        _LOADED[key] = got
    if isinstance(got, BackendUnavailable):
        raise BackendUnavailable(str(got))
    return got


def close_native() -> None:
    """Forget the loaded libraries and remove their build directories (also done at exit)."""
    _LOADED.clear()
    while _DIRS:
        shutil.rmtree(_DIRS.pop(), ignore_errors=True)


atexit.register(close_native)


def _load_file(path: str) -> NativeLib:
    try:
        return NativeLib(path)
    except OSError as exc:
        raise BackendUnavailable(f"cannot load the native bench engine {path}: {exc}") from exc


def _build(cmd: list[str]) -> NativeLib:
    if not cmd:
        raise BackendUnavailable("no C compiler: $CC is empty")
    source = resources.files("loopscope.bench").joinpath("rr.c").read_bytes()
    tmp = tempfile.mkdtemp(prefix="loopscope-rr-")  # mode 0700
    _DIRS.append(tmp)
    src = os.path.join(tmp, "rr.c")
    lib = os.path.join(tmp, "rr.so")
    with open(src, "wb") as f:
        f.write(source)
    try:
        proc = subprocess.run(
            [*cmd, *CFLAGS, "-o", lib, src],
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise BackendUnavailable(
            f"no C compiler {cmd[0]!r} found: install gcc and libc6-dev, or set CC"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise BackendUnavailable(
            f"C compiler {cmd[0]!r} did not finish within {COMPILE_TIMEOUT_S:g} s"
        ) from exc
    except OSError as exc:
        raise BackendUnavailable(f"cannot run the C compiler {cmd[0]!r}: {exc.strerror}") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        first = next((ln for ln in lines if "error" in ln), lines[0] if lines else "")
        raise BackendUnavailable(
            f"C compiler {cmd[0]!r} failed on rr.c (exit {proc.returncode}): {first[:200]}"
        )
    return _load_file(lib)


def resolve_engine(requested: Engine) -> tuple[Engine, str | None]:
    """The engine to run for ``--engine``: (NATIVE or PYTHON, why PYTHON when native was possible).

    ``AUTO`` is NATIVE when :func:`load_native` succeeds, else PYTHON with its one-line reason;
    ``PYTHON`` is PYTHON with no reason.

    Raises:
        BackendUnavailable: ``NATIVE`` asked for and unavailable.
    """
    if requested is Engine.PYTHON:
        return Engine.PYTHON, None
    try:
        load_native()
    except BackendUnavailable as exc:
        if requested is Engine.NATIVE:
            raise BackendUnavailable(f"--engine native: {exc}") from exc
        return Engine.PYTHON, f"native unavailable: {exc}"
    return Engine.NATIVE, None
