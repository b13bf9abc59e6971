"""``loopscope traces --listen``: run the OTLP receiver until a duration passes, Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from loopscope.errors import UsageError
from loopscope.model import Gap
from loopscope.model.spans import SpanRecord
from loopscope.traces.receiver import OtlpReceiver, ReceiverStats

__all__ = ["listen", "parse_listen", "receiver_gaps"]


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:4318"`` -> ("127.0.0.1", 4318); ``":4318"`` and ``"4318"`` bind 127.0.0.1;
    ``"[::1]:4318"`` -> ("::1", 4318).

    Raises:
        UsageError: no valid port.
    """
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:4318")
    return host, int(port)


def receiver_gaps(stats: ReceiverStats) -> list[Gap]:
    """Dropped spans and refused requests, as gaps."""
    gaps = []
    if stats.dropped_spans:
        gaps.append(
            Gap(
                what=f"{stats.dropped_spans} spans",
                reason="dropped by the receiver: it was full (--max-spans); the senders were told "
                "(partial_success.rejected_spans)",
                count=stats.dropped_spans,
            )
        )
    if stats.rejected_requests:
        gaps.append(
            Gap(
                what=f"{stats.rejected_requests} export requests",
                reason="refused (bad path, Host, size or body); their spans are missing",
                count=stats.rejected_requests,
            )
        )
    return gaps


def listen(
    host: str,
    port: int,
    *,
    duration_s: float | None,
    max_spans: int,
    on_ready: Callable[[OtlpReceiver], None] | None = None,
) -> tuple[list[SpanRecord], ReceiverStats]:
    """Receive spans until ``duration_s`` passes (None: until Ctrl-C or SIGTERM).

    Returns:
        The spans kept and the receiver's counters.
    """
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    receiver = OtlpReceiver(host, port, max_spans=max_spans)
    try:
        receiver.start()
        if on_ready is not None:
            on_ready(receiver)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not stop.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                stop.wait(0.5 if left is None else min(0.5, left))
        except KeyboardInterrupt:
            pass
    finally:
        receiver.stop()
        signal.signal(signal.SIGTERM, previous)
    return receiver.spans(), receiver.stats()
