"""``watch --plot``: a real PNG and SVG of a self-calling window (matplotlib, the plot extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from loopscope.analysis.watch.findings import check_watch
from loopscope.analysis.watch.report import summarize_watch
from loopscope.errors import UsageError
from loopscope.watch.plot import SELF_CALL_COLOR, write_watch_plot

pytest.importorskip("matplotlib")


def _builders() -> ModuleType:
    path = Path(__file__).parents[1] / "analysis" / "watch" / "test_report.py"
    spec = importlib.util.spec_from_file_location("watch_report_builders", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _window() -> tuple[object, object, object]:
    b = _builders()
    conns, samples, procs = b.self_calling_app(n=3, externals=4)
    data = b.data(conns, samples, (b.EBPF, b.DESTROY), procs)
    report = summarize_watch(data)
    return data, report, check_watch(report)


def test_png_and_svg(tmp_path: Path) -> None:
    data, report, findings = _window()
    png = write_watch_plot(tmp_path / "w.png", data, report, findings)  # type: ignore[arg-type]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    svg = write_watch_plot(tmp_path / "w.svg", data, report, findings)  # type: ignore[arg-type]
    text = svg.read_text()
    assert "<svg" in text and SELF_CALL_COLOR in text  # the self-call line is red
    # matplotlib keeps each text as a comment: the legend and the finding marks
    assert "<!-- SELF gunicorn[10,11] -&gt; gunicorn[10,11]:8080 -->" in text
    assert "<!-- SELF_CALL_ON_HOT_PATH, SELF_CALL -->" in text


def test_suffix_is_checked(tmp_path: Path) -> None:
    data, report, findings = _window()
    with pytest.raises(UsageError):
        write_watch_plot(tmp_path / "w.pdf", data, report, findings)  # type: ignore[arg-type]
