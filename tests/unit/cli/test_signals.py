"""SIGTERM and SIGHUP raise KeyboardInterrupt once installed; an ignored signal stays ignored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from loopscope.cli.signals import INTERRUPT_SIGNALS, install_interrupt_signals, received

pytestmark = pytest.mark.linux

_CHILD = """
import os, signal, sys, time
from loopscope.cli.signals import install_interrupt_signals
signal.signal(signal.SIGHUP, signal.SIG_IGN) if sys.argv[1] == "ignored" else None
install_interrupt_signals()
try:
    os.kill(os.getpid(), int(sys.argv[2]))
    time.sleep(1)
    print("no interrupt")
except KeyboardInterrupt as exc:
    print("interrupted", exc)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_raises_keyboard_interrupt(signum: int) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, "-", str(int(signum))],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    assert out.strip() == f"interrupted signal {signal.Signals(signum).name}"


def test_ignored_hup_stays_ignored() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, "ignored", str(int(signal.SIGHUP))],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    assert out.strip() == "no interrupt"


def test_install_in_this_process_and_received() -> None:
    before = {s: signal.getsignal(s) for s in INTERRUPT_SIGNALS}
    try:
        handled = install_interrupt_signals()
        assert set(handled) <= set(INTERRUPT_SIGNALS)
        if signal.SIGTERM in handled:
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            assert received()[-1] == signal.SIGTERM
    finally:
        for s, h in before.items():
            signal.signal(s, h)
