"""cli/progress: N/M, elapsed and time left; nothing at all when stderr is not a terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.progress import MofNCompleteColumn, TimeRemainingColumn

from loopscope.cli import progress as progress_module
from loopscope.cli.progress import run_progress


def test_columns_show_count_and_time_left() -> None:
    bar = run_progress()
    kinds = {type(c) for c in bar.columns}
    assert MofNCompleteColumn in kinds and TimeRemainingColumn in kinds


def test_disabled_off_a_terminal_and_for_json(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = Console(file=io.StringIO(), force_terminal=False)
    monkeypatch.setattr(progress_module, "err_console", lambda: pipe)
    assert run_progress().disable
    tty = Console(file=io.StringIO(), force_terminal=True, width=100)
    monkeypatch.setattr(progress_module, "err_console", lambda: tty)
    assert not run_progress().disable
    assert run_progress(disable=True).disable


def test_renders_n_of_m_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    tty = Console(file=out, force_terminal=True, width=100, color_system=None)
    monkeypatch.setattr(progress_module, "err_console", lambda: tty)
    with run_progress(auto_refresh=False) as bar:
        task = bar.add_task("simulating selfcall", total=12)
        bar.update(task, advance=3)
        bar.refresh()
    assert "3/12" in out.getvalue() and "left" in out.getvalue()
