"""Start and stop the lab's HTTP servers: gunicorn (gthread worker, ``threads=N``) or waitress
(``threads=N``), one process each, on a 127.0.0.1 socket this process binds (port 0) and hands over,
so the port is never released and re-bound.

Always use :class:`LabServer` as a context manager: the server is stopped (SIGINT, then SIGKILL of its
process group after 3 s) whatever happens.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import TracebackType

from loopscope.errors import BackendUnavailable, ProbeError

__all__ = ["SERVERS", "LabServer"]

SERVERS: tuple[str, ...] = ("gunicorn", "waitress")
"""Server kinds :class:`LabServer` can start."""

_WAITRESS = (
    "import socket, sys\n"
    "from waitress import serve\n"
    "from loopscope.lab.app import app\n"
    "sock = socket.socket(fileno=int(sys.argv[1]))\n"
    "serve(app, sockets=[sock], threads=int(sys.argv[2]), backlog=2048, connection_limit=4000,\n"
    "      channel_timeout=30, _quiet=True)\n"
)


class LabServer:
    """One lab server process.

    Args:
        kind: ``gunicorn`` or ``waitress``.
        threads: size of the worker thread pool (N).
        pool_hostport: ``host:port`` of the separate pool server, for ``/pool``; None if there is none.

    Raises:
        BackendUnavailable: the server package is not installed (``pip install 'loopscope[lab]'``).
    """

    def __init__(
        self, *, kind: str = "gunicorn", threads: int = 4, pool_hostport: str | None = None
    ):
        if kind not in SERVERS:
            raise BackendUnavailable(f"unknown lab server {kind!r}: use {' or '.join(SERVERS)}")
        if importlib.util.find_spec(kind) is None:
            raise BackendUnavailable(f"{kind} is missing: pip install 'loopscope[lab]'")
        self.kind = kind
        self.threads = threads
        self.pool_hostport = pool_hostport
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()

    @property
    def hostport(self) -> str:
        """``127.0.0.1:PORT`` of the running server."""
        return f"127.0.0.1:{self.port}"

    def start(self, ready_timeout_s: float = 20.0) -> None:
        """Bind 127.0.0.1:0, start the server process on that socket, wait until it answers.

        Raises:
            ProbeError: the server exited or did not answer within ``ready_timeout_s``.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(2048)
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        fd = sock.fileno()
        if self.kind == "gunicorn":
            cmd = [
                sys.executable,
                "-m",
                "gunicorn",
                "-k",
                "gthread",
                "--workers",
                "1",
                "--threads",
                str(self.threads),
                "--bind",
                f"fd://{fd}",
                "--backlog",
                "2048",
                "--worker-connections",
                "4000",
                "--graceful-timeout",
                "1",
                "--timeout",
                "60",
                "--log-level",
                "warning",
                "loopscope.lab.app:app",
            ]
        else:
            cmd = [sys.executable, "-c", _WAITRESS, str(fd), str(self.threads)]
        env = dict(os.environ, LOOPSCOPE_LAB_SELF=self.hostport)
        if self.pool_hostport:
            env["LOOPSCOPE_LAB_POOL"] = self.pool_hostport
        try:
            self._proc = subprocess.Popen(
                cmd,
                pass_fds=(fd,),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                start_new_session=True,
            )
        finally:
            sock.close()  # the child holds the listening socket now
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ProbeError(self.hostport, "start", f"{self.kind} exited: {self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise ProbeError(
            self.hostport, "start", f"{self.kind} did not answer in {ready_timeout_s} s"
        )

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
        try:
            conn.request("GET", "/leaf?work_ms=0")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def log_tail(self, limit_bytes: int = 400) -> str:
        """The last bytes the server wrote to stdout/stderr, for error messages."""
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - limit_bytes))
        return self._log.read().decode(errors="replace").strip().replace("\n", " | ")

    def stop(self) -> None:
        """Stop the server: SIGINT (quick shutdown), then SIGKILL of its process group after 3 s."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5.0)
        try:
            os.killpg(
                proc.pid, signal.SIGKILL
            )  # leftovers of the group we created (gunicorn worker)
        except ProcessLookupError:
            return  # the whole group is gone: nothing to clean up
        # The leftovers are not our children (their parent was the server): wait, bounded, until
        # they are gone, so that nothing of the lab outlives the command
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)

    def __enter__(self) -> LabServer:
        try:
            self.start()
        except BaseException:  # Ctrl-C/TERM while it starts: no server left behind (then re-raised)
            self.stop()
            self._log.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._log.close()
