"""The Python API's contract: light import, typed entry points, usage errors before any work, and the
``doctor`` name that shares its spelling with the ``loopscope.doctor`` subpackage."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import typing

import pytest

import loopscope
from loopscope import api
from loopscope.errors import UsageError

ENTRY_POINTS = ["doctor", "listeners", "probe", "snapshot", "talk_map"]


def test_import_loopscope_loads_only_the_api_module():
    code = "import sys, json, loopscope; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    mine = [m for m in json.loads(out.stdout) if m.startswith("loopscope")]
    assert mine == ["loopscope", "loopscope.api", "loopscope.doctor"]


def _names() -> dict[str, object]:
    """The return types, imported as the API's TYPE_CHECKING block does (they stay unloaded at run time)."""
    from loopscope.analysis.listeners import Listener
    from loopscope.analysis.talkmap import TalkMap
    from loopscope.doctor.runner import DoctorReport
    from loopscope.model import Snapshot
    from loopscope.probes.run import ProbeReport

    return {c.__name__: c for c in (Listener, TalkMap, DoctorReport, Snapshot, ProbeReport)}


def test_entry_points_are_exported_typed_and_documented():
    assert set(ENTRY_POINTS) <= set(loopscope.__all__) and api.__all__ == ENTRY_POINTS
    for name in ENTRY_POINTS:
        fn = getattr(loopscope, name)
        assert fn is getattr(api, name)
        hints = typing.get_type_hints(fn, localns=_names())
        assert "return" in hints and set(inspect.signature(fn).parameters) <= set(hints)
        doc = inspect.getdoc(fn) or ""
        assert "Args:" in doc and "Returns:" in doc and "Raises:" in doc, name
    returns = {
        n: typing.get_type_hints(getattr(api, n), localns=_names())["return"] for n in ENTRY_POINTS
    }
    assert {n: getattr(t, "__name__", str(t)) for n, t in returns.items()} == {
        "doctor": "DoctorReport",
        "listeners": "list",
        "probe": "ProbeReport",
        "snapshot": "Snapshot",
        "talk_map": "TalkMap",
    }


def test_doctor_stays_the_function_after_its_subpackage_is_imported():
    from loopscope.doctor import runner  # noqa: F401
    from loopscope.doctor.gather import DoctorOptions  # noqa: F401

    assert callable(loopscope.doctor) and loopscope.doctor is api.doctor


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: loopscope.probe(":8080", count=0), "count 0 out of range"),
        (lambda: loopscope.probe(":8080", timeout_s=0), "timeout_s 0 out of range"),
        (lambda: loopscope.probe("gopher://x:1"), "unknown scheme"),
        (lambda: loopscope.doctor(rung=4), "rung must be 1, 2 or 3"),
        (lambda: loopscope.doctor(external="nohost"), "HOST:PORT"),
        (lambda: loopscope.doctor("x", all_netns=True), "not both"),
        (lambda: loopscope.snapshot(source="bogus"), "bogus"),
    ],
)
def test_bad_arguments_are_usage_errors_before_any_work(call, message):
    with pytest.raises(UsageError, match=message):
        call()
