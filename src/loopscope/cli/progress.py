"""The progress bar of long runs (bench, lab, simulate sweeps): N/M done, time spent, time left.

On stderr and only on a terminal: a pipe or a log file gets no control sequences. The estimate is
rich's (``TimeRemainingColumn``: the recent speed of the steps times the steps left).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopscope.cli.common import err_console

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["run_progress"]


def run_progress(*, disable: bool = False, auto_refresh: bool = True) -> Progress:
    """A transient rich Progress on stderr: ``label ━━━━ 3/12 0:00:41 left 0:02:03``.

    Args:
        disable: no bar at all (``--json`` runs keep their stderr quiet).
        auto_refresh: False when a refresh thread would disturb a measurement (bench); the caller
            refreshes after each step.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = err_console()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        auto_refresh=auto_refresh,
        disable=disable or not console.is_terminal,
    )
