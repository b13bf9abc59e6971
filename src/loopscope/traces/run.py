"""``loopscope trace -- CMD``: run a command under OpenTelemetry's own auto-instrumentation
(``opentelemetry-instrument`` from ``opentelemetry-distro``) exporting OTLP/HTTP protobuf to a loopscope
receiver, until it exits or is stopped.

The command runs in its own process group; SIGINT/SIGTERM to loopscope are forwarded to that group, the
command's exit is awaited (the SDK flushes its last batch at exit), then the spans are reported. A caller
that also watches the kernel passes ``on_tick`` (called every ``tick_s`` while the command runs).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from loopscope.errors import LoopscopeError, UsageError
from loopscope.model.spans import SpanRecord
from loopscope.traces.receiver import OtlpReceiver, ReceiverStats

__all__ = [
    "INSTRUMENT_HINT",
    "TracedRun",
    "command_pids",
    "find_instrument",
    "otel_env",
    "run_traced",
]

INSTRUMENT_HINT = (
    "loopscope trace needs opentelemetry-instrument: pip install opentelemetry-distro "
    "opentelemetry-exporter-otlp-proto-http, then opentelemetry-bootstrap -a install"
)
STOP_TIMEOUT_S = 20.0
"""Seconds the command gets to exit after a forwarded signal before it is killed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TracedRun:
    """What came out of one traced command."""

    spans: list[SpanRecord]
    """Spans received, in arrival order."""
    receiver: ReceiverStats
    """The receiver's counters (drops and refusals included)."""
    receiver_port: int
    """Port the receiver listened on (its connections are the exporter's, not the app's)."""
    returncode: int
    """The command's exit status (negative: killed by that signal)."""
    pids: tuple[int, ...]
    """Every process of the command seen while it ran (its process group and descendants)."""
    stopped_by: str | None
    """``SIGINT``/``SIGTERM`` when loopscope was told to stop and forwarded it; None when it exited."""
    killed: bool
    """The command ignored the forwarded signal for :data:`STOP_TIMEOUT_S` and was killed."""
    duration_s: float
    """Seconds from start to exit."""
    service_name: str
    """``OTEL_SERVICE_NAME`` given to the command."""


def find_instrument() -> str:
    """Path of ``opentelemetry-instrument``: beside this Python, or on PATH.

    Raises:
        UsageError: not installed (with the install hint).
    """
    beside = Path(sys.executable).with_name("opentelemetry-instrument")
    found = str(beside) if beside.exists() else shutil.which("opentelemetry-instrument")
    if found is None:
        raise UsageError(INSTRUMENT_HINT)
    return found


def otel_env(
    cmd: Sequence[str],
    receiver_port: int,
    *,
    service_name: str | None = None,
    base: Mapping[str, str] | None = None,
    receiver_host: str = "127.0.0.1",
) -> dict[str, str]:
    """The command's environment: OTLP/HTTP protobuf to the receiver, 200 ms batches, no metrics or logs.

    ``OTEL_SERVICE_NAME`` is ``service_name``, else the one already in ``base``, else the command's
    name. Settings already in ``base`` (sampler, propagators...) are kept except the exporter and
    endpoint, which must point at the receiver.

    Example: ``otel_env(["gunicorn", "app:app"], 4318, base={})["OTEL_SERVICE_NAME"] == "gunicorn"``;
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT == "http://127.0.0.1:4318/v1/traces"``.
    """
    env = dict(os.environ if base is None else base)
    host = f"[{receiver_host}]" if ":" in receiver_host else receiver_host
    name = service_name or env.get("OTEL_SERVICE_NAME") or Path(cmd[0]).name or "app"
    env.update(
        {
            "OTEL_SERVICE_NAME": name,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://{host}:{receiver_port}/v1/traces",
        }
    )
    env.setdefault("OTEL_METRICS_EXPORTER", "none")
    env.setdefault("OTEL_LOGS_EXPORTER", "none")
    env.setdefault("OTEL_BSP_SCHEDULE_DELAY", "200")
    return env


def command_pids(root_pid: int, proc: str = "/proc") -> set[int]:
    """Pids of ``root_pid``, its process group and every descendant, read from ``/proc/*/stat``.

    Example: gunicorn master 100 (pgid 100) with workers 101, 102 -> ``{100, 101, 102}``.
    """
    from loopscope.backends.linux import procfs

    parent: dict[int, int] = {}
    out = {root_pid}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/stat", encoding="utf-8", errors="replace") as fh:
                _comm, ppid, pgid, _ticks = procfs.parse_stat(fh.read())
        except (OSError, LoopscopeError):
            continue  # exited meanwhile
        pid = int(entry.name)
        parent[pid] = ppid
        if pgid == root_pid:
            out.add(pid)
    for pid in parent:
        seen = pid
        for _ in range(64):  # ancestry depth bound
            seen = parent.get(seen, 0)
            if seen in out:
                out.add(pid)
                break
            if seen <= 1:
                break
    return out


def run_traced(
    cmd: Sequence[str],
    *,
    service_name: str | None = None,
    receiver_host: str = "127.0.0.1",
    receiver_port: int = 0,
    max_spans: int = 2_000_000,
    on_ready: Callable[[OtlpReceiver, int], None] | None = None,
    on_tick: Callable[[], None] | None = None,
    tick_s: float = 0.2,
) -> TracedRun:
    """Run ``cmd`` under ``opentelemetry-instrument`` until it exits, or until SIGINT/SIGTERM (forwarded
    to its process group, then awaited).

    The command inherits the file descriptors loopscope was given (like a shell: ``gunicorn --bind
    fd://N``, socket activation); loopscope's own descriptors are not inheritable.

    Raises:
        UsageError: empty command, ``opentelemetry-instrument`` missing, the receiver cannot listen, or
            the command cannot be started.
    """
    if not cmd:
        raise UsageError(
            "give the command to run after --, e.g. loopscope trace -- gunicorn app:app"
        )
    tool = find_instrument()
    stop = threading.Event()
    got: list[str] = []
    proc: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        got.append(signal.Signals(signum).name)
        stop.set()
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signum)
            except ProcessLookupError:
                pass  # already gone: nothing to forward to

    with OtlpReceiver(receiver_host, receiver_port, max_spans=max_spans) as receiver:
        env = otel_env(
            cmd,
            receiver.port,
            service_name=service_name,
            receiver_host=receiver_host,
        )
        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        started = time.monotonic()
        pids: set[int] = set()
        killed = False
        try:
            try:
                proc = subprocess.Popen(
                    [tool, *cmd], env=env, start_new_session=True, close_fds=False
                )
            except OSError as exc:
                raise UsageError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from exc
            if on_ready is not None:
                on_ready(receiver, proc.pid)
            next_scan = 0.0
            while proc.poll() is None:
                if time.monotonic() >= next_scan:
                    pids |= command_pids(proc.pid)
                    next_scan = time.monotonic() + 1.0
                if on_tick is not None:
                    on_tick()
                if stop.wait(tick_s) and proc.poll() is None:
                    deadline = time.monotonic() + STOP_TIMEOUT_S
                    while proc.poll() is None and time.monotonic() < deadline:
                        if on_tick is not None:
                            on_tick()
                        time.sleep(tick_s)
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                        killed = True
                    break
            returncode = proc.wait()
        finally:
            if proc is not None and proc.poll() is None:  # an error above: do not leave it running
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            for s, handler in previous.items():
                signal.signal(s, handler)
        duration_s = time.monotonic() - started
        time.sleep(0.2)  # an export still being read by the receiver's thread
        spans, stats = receiver.spans(), receiver.stats()
        port = receiver.port
    return TracedRun(
        spans=spans,
        receiver=stats,
        receiver_port=port,
        returncode=returncode,
        pids=tuple(sorted(pids | {proc.pid})),
        stopped_by=got[0] if got else None,
        killed=killed,
        duration_s=duration_s,
        service_name=env["OTEL_SERVICE_NAME"],
    )
