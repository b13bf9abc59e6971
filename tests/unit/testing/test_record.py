"""Fixture recording: netlink replies recorded from this kernel replay to the same answer, and the one
command (tests/record_fixtures.py) lists every recorder, each of which exists."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from loopscope.backends.linux import rtnl
from loopscope.backends.linux.netlink import KernelTransport
from loopscope.testing.record import load_transport, record_rtnl, save_datagrams

ROOT = Path(__file__).resolve().parents[3]
COMMAND = ROOT / "tests" / "record_fixtures.py"


def _command() -> ModuleType:
    spec = importlib.util.spec_from_file_location("record_fixtures", COMMAND)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["record_fixtures"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_saved_datagrams_replay_in_order(tmp_path: Path) -> None:
    save_datagrams(tmp_path / "x.json", [b"\x01\x02", b"", b"\xff"], kind="test")
    transport = load_transport(tmp_path / "x.json")
    assert [transport.recv() for _ in range(3)] == [b"\x01\x02", b"", b"\xff"]


@pytest.mark.linux
def test_recorded_rtnl_replays_to_the_live_answer(tmp_path: Path) -> None:
    count = record_rtnl(tmp_path / "rtnl.json")
    replayed = rtnl.dump_links(load_transport(tmp_path / "rtnl.json"))
    live = rtnl.dump_links(KernelTransport(rtnl.NETLINK_ROUTE))
    assert [link.name for link in replayed] == [link.name for link in live]
    assert count >= 1 and any(link.loopback for link in replayed)


def test_every_recorder_is_listed_and_exists() -> None:
    cmd = _command()
    names = [r.name for r in cmd.RECORDERS]
    assert len(names) == len(set(names))
    for rec in cmd.RECORDERS:
        assert (ROOT / rec.script).is_file(), rec.script
    recorders = {
        str(p.relative_to(ROOT))
        for pattern in ("record_*.py", "record_*.sh", "make_*.py")
        for p in (ROOT / "tests").rglob(pattern)
        if p != COMMAND
    }
    assert recorders == {r.script for r in cmd.RECORDERS}, (
        "list every recorder in tests/record_fixtures.py"
    )


def test_list_and_unknown_name() -> None:
    listed = subprocess.run(
        [sys.executable, str(COMMAND), "--list"], capture_output=True, text=True, check=False
    )
    assert listed.returncode == 0 and "destroy" in listed.stdout
    bad = subprocess.run(
        [sys.executable, str(COMMAND), "no-such"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "choose from" in bad.stderr
