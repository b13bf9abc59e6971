"""write_plot on a report built from known values (no sockets)."""

import pytest

from loopscope.analysis.bench.results import BenchConfig, BenchReport, CellResult
from loopscope.analysis.stats import LogHistogram
from loopscope.bench.plot import write_plot
from loopscope.errors import UsageError


def _report(skip_all=False):
    cells = []
    for path, base in (("call", 150), ("tcp4", 15_000), ("unix", 9_000)):
        for size in (1, 1024, 65536):
            if skip_all:
                cells.append(CellResult(path=path, label=path, size_bytes=size, skipped_reason="x"))
            else:
                lat = [base + size // 10 + i for i in range(100)]
                cells.append(
                    CellResult(
                        path=path,
                        label=path,
                        size_bytes=size,
                        summary=LogHistogram.of(lat).summarize(),
                    )
                )
    cfg = BenchConfig(paths=("call", "tcp4", "unix"), sizes_bytes=(1, 1024, 65536))
    return BenchReport(
        config=cfg,
        client_cpu=None,
        server_cpu=None,
        host_address=None,
        timer_overhead_ns=60,
        cells=tuple(cells),
    )


def test_svg_has_one_line_per_path(tmp_path):
    pytest.importorskip("matplotlib")
    out = write_plot(_report(), tmp_path / "sub" / "lat.svg")
    text = out.read_text()
    assert text.lstrip().startswith("<?xml")
    for label in ("call", "tcp4", "unix"):
        assert f">{label}</text>" in text
    assert "round trip by path" in text


def test_errors(tmp_path):
    with pytest.raises(UsageError, match=r"\.png or \.svg"):
        write_plot(_report(), tmp_path / "x.jpg")
    pytest.importorskip("matplotlib")
    with pytest.raises(UsageError, match="nothing to plot"):
        write_plot(_report(skip_all=True), tmp_path / "x.png")
