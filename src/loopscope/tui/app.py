"""The Textual app of ``loopscope top``: apps, call-graph edges, listeners, findings and a status line.

The app reads frames from a :class:`~loopscope.tui.source.FrameSource` every refresh (>= 0.5 s) and copies
their rows (:mod:`loopscope.tui.panes`) into tables; it computes nothing itself. Keys: ``s`` sort,
``f`` filter by app or port, ``p``/space pause, ``n`` switch network namespace (the old source is closed
first: eBPF detached, then a new session opens in the chosen one), Enter on an edge for its detail
(with ``--http`` its paths), ``?`` help, ``q`` quit. Laid out for 80x24 and up.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from loopscope.errors import LoopscopeError
from loopscope.tui.panes import (
    SORT_KEYS,
    Filter,
    SortKey,
    TopFrame,
    app_rows,
    edge_detail,
    edge_rows,
    finding_rows,
    listener_rows,
    parse_filter,
    status_line,
)
from loopscope.tui.source import MIN_REFRESH_S, FrameSource, NetnsChoice, NetnsSwitcher

__all__ = ["HELP_TEXT", "TopApp"]

HELP_TEXT = """loopscope top: loopback connections now (last window, refreshed at most every 0.5 s)

Apps      Ext/s external inbound connections/s, Self/s self-calls/s, Amplif. self-calls per
          external request (connections stand in without --http), trend of inbound/s
Edges     client app -> server app:port, connections/s; SELF rows are self-calls (red);
          clients without a listener are grouped by name: 'curl (300 processes)'
Listeners accept queue now/backlog, max in the window, trend; 'full' = it hit the backlog
Findings  severity, code, subject and the remedy

s  sort (rate / self-calls / name)     f  filter by app name or :port (empty clears)
p  pause / resume collection           Enter  detail of the selected edge (pids,
n  switch network namespace                   bytes, HTTP paths with --http)
?  this help                           q  quit (eBPF detached, nothing left behind)"""
_SELF_STYLE = "bold red"


class _TextScreen(ModalScreen[None]):
    """A modal text box closed by any of Escape, q, Enter or ?."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,enter,question_mark", "dismiss_box", "Close"),
    ]
    DEFAULT_CSS = """
    _TextScreen { align: center middle; }
    _TextScreen > Static { width: auto; max-width: 100%; height: auto; border: round $accent;
                           background: $panel; padding: 0 1; }
    """

    def __init__(self, text: str, box_id: str) -> None:
        super().__init__()
        self._text = text
        self._box_id = box_id

    def compose(self) -> ComposeResult:
        yield Static(Text(self._text), id=self._box_id)

    def action_dismiss_box(self) -> None:
        self.dismiss(None)


class _NetnsScreen(ModalScreen[NetnsChoice | None]):
    """The namespaces to pick from (Enter picks, Escape or q keeps the current one)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,n", "cancel", "Cancel")]
    DEFAULT_CSS = """
    _NetnsScreen { align: center middle; }
    _NetnsScreen > OptionList { width: 60; max-width: 100%; height: auto; max-height: 80%;
                                border: round $accent; background: $panel; }
    """

    def __init__(self, choices: list[NetnsChoice], current: str) -> None:
        super().__init__()
        self._choices = choices
        self._current = current

    def compose(self) -> ComposeResult:
        options = [
            Option(Text(c.label + ("  (now)" if c.label == self._current else "")))
            for c in self._choices
        ]
        box = OptionList(*options, id="netns")
        box.border_title = "network namespace"
        yield box

    def on_mount(self) -> None:
        box = self.query_one(OptionList)
        now = [k for k, c in enumerate(self._choices) if c.label == self._current]
        box.highlighted = now[0] if now else 0
        box.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self._choices[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)


class TopApp(App[None]):
    """Live panes over one frame source."""

    TITLE = "loopscope top"
    CSS = """
    Screen { layout: vertical; }
    #title { height: 1; background: $boost; text-style: bold; }
    #panes { height: 1fr; }
    DataTable { height: 1fr; overflow-x: hidden; }
    #apps { min-height: 3; }
    #edges { height: 2fr; min-height: 4; }
    #listeners { min-height: 3; }
    #findings { min-height: 3; }
    #status { height: 1; background: $boost; }
    #filter { height: 3; display: none; }
    #filter.shown { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("s", "sort", "Sort"),
        Binding("f", "filter", "Filter"),
        Binding("p,space", "pause", "Pause"),
        Binding("n", "netns", "Netns"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(
        self,
        source: FrameSource,
        *,
        refresh_s: float = 1.0,
        switcher: NetnsSwitcher | None = None,
        netns: NetnsChoice | None = None,
    ) -> None:
        """Args:
        source: where frames come from; the app owns it from here (it closes it on a switch, and
            :attr:`source` is the one to close after :meth:`run`).
        refresh_s: seconds between screen updates (at least 0.5).
        switcher: lists namespaces and opens sources in them (None: ``n`` says it cannot).
        netns: the namespace ``source`` reads (default: this one), for the title before its first
            frame and to reopen it when a switch fails.
        """
        super().__init__()
        self.source = source
        self.switcher = switcher
        self.netns = netns or NetnsChoice(spec=None, label="host")
        self.switches = 0
        self.dead: str | None = None
        self.refresh_s = max(refresh_s, MIN_REFRESH_S)
        self.sort = SortKey.RATE
        self.flt = Filter()
        self.paused = False
        self.frame: TopFrame | None = None
        self.renders = 0

    def compose(self) -> ComposeResult:
        yield Static("loopscope top: starting", id="title")
        with Vertical(id="panes"):
            yield DataTable(id="apps", show_cursor=False)
            yield DataTable(id="edges", cursor_type="row")
            yield DataTable(id="listeners", show_cursor=False)
            yield DataTable(id="findings", show_cursor=False)
        yield Input(placeholder="app name or :port, Enter to apply, empty clears", id="filter")
        yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#apps", DataTable).add_columns(
            "App", "Ports", "Ext/s", "Self/s", "Amplif.", "Inbound trend"
        )
        self.query_one("#edges", DataTable).add_columns(
            "Client", "Server:port", "Conn/s", "Conns", "Self"
        )
        self.query_one("#listeners", DataTable).add_columns("Listener", "Queue", "Max", "Trend", "")
        self.query_one("#findings", DataTable).add_columns(
            "Severity", "Finding", "Subject", "Remedy"
        )
        self.query_one("#edges", DataTable).focus()
        self.refresh_panes()
        self.set_interval(self.refresh_s, self.refresh_panes)

    def refresh_panes(self) -> None:
        """Copy the latest frame into the panes (skipped when it did not change)."""
        if self.dead is not None:  # a switch failed and the old namespace did not reopen
            self._say(self.dead)
            return
        frame = self.source.latest()
        status = self.query_one("#status", Static)
        if frame is None and self.frame is None:
            self.query_one("#title", Static).update(f"loopscope top ({self.netns.label}): starting")
        if self.source.error:
            status.update(Text(f"error: {self.source.error}", style="bold red"))
        if frame is None or frame is self.frame:
            if frame is None and not self.source.error:
                status.update(status_line(None))
            return
        self.frame = frame
        self._fill()

    def _fill(self) -> None:
        frame = self.frame
        if frame is None:
            return
        rep = frame.report
        self.query_one("#title", Static).update(
            f"loopscope top ({rep.netns_label}) last {rep.window_s:.0f} s: "
            f"{sum(e.connections for e in rep.edges)} conns, "
            f"{sum(1 for e in rep.edges if e.self_call)} self-call edges, sort {self.sort.value}"
            + ("  PAUSED" if frame.paused else "")
        )
        apps = self.query_one("#apps", DataTable)
        self._rows(apps, [(r[:6], r[6] == "self") for r in app_rows(frame, self.sort, self.flt)])
        edges = self.query_one("#edges", DataTable)
        self._rows(edges, [(r, r[4] == "SELF") for r in edge_rows(frame, self.sort, self.flt)])
        listeners = self.query_one("#listeners", DataTable)
        self._rows(listeners, [(r, r[4] == "full") for r in listener_rows(frame, self.flt)])
        findings = self.query_one("#findings", DataTable)
        self._rows(
            findings,
            [(r, r[0] in ("high", "critical")) for r in finding_rows(frame)],
        )
        self.query_one("#status", Static).update(
            status_line(frame, self.source.sources(), self.flt)
        )
        self.renders += 1

    @staticmethod
    def _rows(table: DataTable[Text], rows: list[tuple[tuple[str, ...], bool]]) -> None:
        cursor = table.cursor_row
        table.clear()
        for cells, hot in rows:
            table.add_row(*(Text(c, style=_SELF_STYLE if hot else "") for c in cells))
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)

    def action_sort(self) -> None:
        """Next sort key."""
        self.sort = SORT_KEYS[(SORT_KEYS.index(self.sort) + 1) % len(SORT_KEYS)]
        self._fill()

    def action_pause(self) -> None:
        """Pause or resume collection."""
        self.paused = not self.paused
        self.source.set_paused(self.paused)
        self.frame = None
        self.refresh_panes()

    def action_filter(self) -> None:
        """Show the filter input."""
        box = self.query_one("#filter", Input)
        box.value = ""
        box.add_class("shown")
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Apply the filter and hide the input."""
        self.flt = parse_filter(event.value)
        event.input.remove_class("shown")
        self.query_one("#edges", DataTable).focus()
        self._fill()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on an edge: its detail."""
        if event.data_table.id != "edges" or self.frame is None:
            return
        text = edge_detail(self.frame, event.cursor_row, self.sort, self.flt)
        self.push_screen(_TextScreen(text, "detail"))

    def action_netns(self) -> None:
        """List the namespaces; the chosen one replaces the current session."""
        if self.switcher is None:
            self._say("no namespace switching here (recorded data)")
            return
        try:
            choices = self.switcher.choices()
        except (LoopscopeError, OSError) as exc:
            self._say(f"cannot list namespaces: {exc}")
            return
        self.push_screen(_NetnsScreen(choices, self.netns.label), self._chosen)

    def _say(self, message: str) -> None:
        self.query_one("#status", Static).update(Text(message, style="bold red"))

    def _chosen(self, choice: NetnsChoice | None) -> None:
        if choice is None or choice.label == self.netns.label:
            return
        self.query_one("#title", Static).update(f"loopscope top ({choice.label}): switching")
        self._say(f"closing the session in {self.netns.label}, opening one in {choice.label}...")
        self.call_after_refresh(self.switch_netns, choice)

    def switch_netns(self, choice: NetnsChoice) -> None:
        """Close the current source (eBPF detached, threads joined), then open one in ``choice``; if
        that fails, reopen the previous namespace and say why on the status line."""
        if self.switcher is None:
            return
        previous = self.netns
        self.source.close()
        self.frame = None
        try:
            source = self.switcher.open(choice.spec)
        except LoopscopeError as exc:
            error = f"cannot watch {choice.label}: {exc}"
            try:
                source = self.switcher.open(previous.spec)
            except LoopscopeError as again:
                self.dead = f"{error}; {previous.label} did not reopen either: {again}"
                self._say(self.dead)
                return
            self.notify(error, severity="error", timeout=8)
            choice = previous
        else:
            self.switches += 1
        source.set_paused(self.paused)
        self.source = source
        self.netns = choice
        self.query_one("#title", Static).update(f"loopscope top ({choice.label}): starting")
        self.refresh_panes()

    def action_help(self) -> None:
        """The help box."""
        self.push_screen(_TextScreen(HELP_TEXT, "help"))

    async def action_quit(self) -> None:
        """Stop collecting (the session is closed by the caller) and leave."""
        self.exit()
