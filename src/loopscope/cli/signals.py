"""SIGTERM and SIGHUP behave like Ctrl-C: they raise KeyboardInterrupt in the main thread.

``timeout``, systemd and a closed terminal send TERM or HUP, not INT; every command already keeps
and prints what finished on KeyboardInterrupt, stops its children and removes its files in
``finally`` blocks, so turning those signals into the same exception gives them the same clean end.
A signal that was ignored when loopscope started (``nohup`` ignores HUP) stays ignored.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

__all__ = ["INTERRUPT_SIGNALS", "install_interrupt_signals", "received"]

INTERRUPT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP)
"""The signals turned into KeyboardInterrupt (SIGINT already is, by Python)."""

_received: list[int] = []


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def install_interrupt_signals() -> list[signal.Signals]:
    """Make SIGTERM and SIGHUP raise KeyboardInterrupt (main thread only; ignored signals stay
    ignored).

    Returns:
        The signals now handled.
    """
    if threading.current_thread() is not threading.main_thread():
        return []
    handled = []
    for signum in INTERRUPT_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue
        signal.signal(signum, _raise_interrupt)
        handled.append(signum)
    return handled


def received() -> tuple[int, ...]:
    """The TERM/HUP signal numbers received so far, in order."""
    return tuple(_received)
