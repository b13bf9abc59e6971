"""ratio_to_call, CLI argument parsers, and the purity of the bench analysis modules."""

from dataclasses import replace

import pytest

from loopscope.analysis.bench.results import CellResult, Engine, ratio_to_call
from loopscope.analysis.stats import LogHistogram
from loopscope.cli.bench import format_size, parse_paths, parse_sizes
from loopscope.errors import UsageError


def _cell(path, size, p50):
    return CellResult(
        path=path, label=path, size_bytes=size, summary=LogHistogram.of([p50]).summarize()
    )


def test_ratio_to_call_per_size():
    cells = [
        _cell("call", 1, 100),
        _cell("tcp4", 1, 15_000),
        _cell("call", 1024, 200),
        _cell("tcp4", 1024, 20_000),
        _cell("tcp4", 65536, 50_000),
        CellResult(path="udp4", label="udp", size_bytes=1, skipped_reason="x"),
    ]
    out = ratio_to_call(cells)
    assert [c.ratio_to_call for c in out] == [1.0, 150.0, 1.0, 100.0, None, None]
    assert out[5].skipped_reason == "x"


def test_ratio_to_call_per_engine():
    """Compiled paths against the C call, Python ones (HTTP) against the Python call."""
    native, python = Engine.NATIVE, Engine.PYTHON
    cells = [
        replace(_cell("call", 64, 25), engine=native),
        replace(_cell("call", 64, 150), engine=python),
        replace(_cell("tcp4", 64, 15_000), engine=native),
        replace(_cell("http-keepalive", 64, 300_000), engine=python),
    ]
    got = [c.ratio_to_call for c in ratio_to_call(cells)]
    assert got == [1.0, 1.0, 15_000 / 25, 300_000 / 150]
    only_native = [cells[0], cells[3]]  # no Python call measured: the C one is all there is
    assert ratio_to_call(only_native)[1].ratio_to_call == 300_000 / 25


def test_parse_sizes_and_format():
    assert parse_sizes("1,1024,65536,1048576") == (1, 1024, 65536, 1048576)
    assert parse_sizes("1, 1k,64KiB,1m") == (1, 1024, 65536, 1048576)
    for bad in ("0", "x", "1g", "-5", ""):
        with pytest.raises(UsageError):
            parse_sizes(bad)
    assert [format_size(v) for v in (1, 1500, 65536, 1048576)] == [
        "1 B",
        "1500 B",
        "64 KiB",
        "1 MiB",
    ]


def test_parse_paths():
    assert parse_paths("tcp4, unix") == ("tcp4", "unix")
    assert "http-newconn" in parse_paths(None) and parse_paths("all") == parse_paths(None)
    with pytest.raises(UsageError, match="unknown path"):
        parse_paths("tcp5")
