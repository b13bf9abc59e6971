"""Where ``loopscope top`` gets its frames: one watch session on its own threads.

- The **collector thread** owns the :class:`~loopscope.watch.session.WatchSession`: it drains the event
  sources every ``drain_interval_s`` and takes the snapshots, exactly as ``watch`` does. Nothing else
  runs on it, so rendering never delays a drain.
- The **analysis thread** copies the recent window out of the session (under a lock, a few ms) and
  computes the report, findings and series (:func:`make_frame`) at most every ``refresh_s`` (>= 0.5 s),
  and never more than a third of the time (it waits twice as long as the last frame took): Python
  threads share one interpreter lock, and a busy host's window takes long to analyse.
- The UI thread only reads :meth:`SessionSource.latest`.

:meth:`SessionSource.close` stops both threads and closes the session (eBPF detached, multicast groups
left, capture stopped).

Switching namespace (key ``n``) goes through a :class:`NetnsSwitcher`: it lists the namespaces
(:func:`list_namespaces`: this one, the named ones under /run/netns, then those seen only through a
process, as ``--all-netns`` reads them) and opens a new source in the chosen one; the app closes the old
source first. :class:`SessionSwitcher` opens :class:`SessionSource`; tests inject their own.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from typing import Protocol

from loopscope.analysis.watch.findings import check_watch
from loopscope.analysis.watch.model import WatchData
from loopscope.analysis.watch.report import summarize_watch
from loopscope.analysis.watch.timeline import build_timeline
from loopscope.backends.linux.netns import list_netns, resolve_netns
from loopscope.errors import LoopscopeError
from loopscope.model import NetnsId
from loopscope.model.events import SourceStatus
from loopscope.tui.panes import TopFrame
from loopscope.watch.session import WatchOptions, WatchSession
from loopscope.watch.view import filter_report

__all__ = [
    "MIN_REFRESH_S",
    "FrameSource",
    "NetnsChoice",
    "NetnsSwitcher",
    "SessionSource",
    "SessionSwitcher",
    "StaticSource",
    "list_namespaces",
    "make_frame",
]

MIN_REFRESH_S = 0.5
"""The screen updates at most this often."""


def make_frame(
    data: WatchData,
    *,
    pids: tuple[int, ...] = (),
    ports: tuple[int, ...] = (),
    paused: bool = False,
    bucket_s: float = 1.0,
) -> TopFrame:
    """Report, findings and series of one window (pure computation; timed for the status line)."""
    began = time.perf_counter()
    report = filter_report(summarize_watch(data), pids, ports)
    findings = tuple(check_watch(report))
    timeline = build_timeline(data, report, findings, bucket_s=bucket_s)
    return TopFrame(
        report=report,
        findings=findings,
        timeline=timeline,
        paused=paused,
        compute_s=time.perf_counter() - began,
    )


class FrameSource(Protocol):
    """What the app reads: the latest frame and the live source statuses; pause and close."""

    def latest(self) -> TopFrame | None:
        """The newest frame (None before the first)."""
        ...

    def sources(self) -> tuple[SourceStatus, ...]:
        """Source statuses with event and drop counts now."""
        ...

    def set_paused(self, paused: bool) -> None:
        """Pause or resume collection."""
        ...

    def close(self) -> None:
        """Stop and release everything."""
        ...

    @property
    def error(self) -> str | None:
        """Why the source stopped, if it did."""
        ...


class StaticSource:
    """A fixed frame (recorded data; tests and ``--replay``)."""

    def __init__(self, frame: TopFrame) -> None:
        self.frame = frame
        self.paused = False
        self.closed = False

    def latest(self) -> TopFrame | None:
        """The frame, marked paused when paused."""
        if self.paused == self.frame.paused:
            return self.frame
        return replace(self.frame, paused=self.paused)

    def sources(self) -> tuple[SourceStatus, ...]:
        """The recorded statuses."""
        return self.frame.report.sources

    def set_paused(self, paused: bool) -> None:
        """Record the state."""
        self.paused = paused

    def close(self) -> None:
        """Nothing to release."""
        self.closed = True

    @property
    def error(self) -> str | None:
        """Never fails."""
        return None


class SessionSource:
    """A live watch session on a collector thread, analysed on a second thread.

    Raises:
        LoopscopeError: the session could not start (unknown namespace, no snapshot source); raised by
            the constructor, which waits for the collector thread to open the sources.
    """

    def __init__(
        self,
        options: WatchOptions,
        *,
        pids: tuple[int, ...] = (),
        ports: tuple[int, ...] = (),
        window_s: float = 10.0,
        refresh_s: float = 1.0,
    ) -> None:
        self.options = options
        self.pids, self.ports = pids, ports
        self.window_s = window_s
        self.refresh_s = max(refresh_s, MIN_REFRESH_S)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._frame: TopFrame | None = None
        self._sources: tuple[SourceStatus, ...] = ()
        self._session: WatchSession | None = None
        self._error: str | None = None
        self._want_pause = False
        self.polls = 0
        self.frames = 0
        self._collector = threading.Thread(target=self._collect, name="top-collector", daemon=True)
        self._analysis = threading.Thread(target=self._analyse, name="top-analysis", daemon=True)
        self._collector.start()
        self._ready.wait()
        if self._session is None:
            raise LoopscopeError(self._error or "watch session did not start")
        self._analysis.start()

    @property
    def error(self) -> str | None:
        """Why collection stopped, if it did."""
        return self._error

    def _collect(self) -> None:
        try:
            session = WatchSession(self.options)
        except Exception as exc:  # reported by the constructor
            self._error = str(exc) or type(exc).__name__
            self._ready.set()
            return
        self._session = session
        self._ready.set()
        try:
            while not self._stop.wait(self.options.drain_interval_s):
                with self._lock:
                    if self._want_pause != session.paused:
                        session.pause() if self._want_pause else session.resume()
                    session.poll()
                    session.trim(time.time_ns() - int(self.window_s * 2 * 1e9))
                    self.polls += 1
        except Exception as exc:
            self._error = f"collector stopped: {exc}"
        finally:
            with self._lock:
                session.close()

    def _analyse(self) -> None:
        wait_s = self.refresh_s
        while not self._stop.wait(wait_s):
            session = self._session
            if session is None:
                return
            with self._lock:  # a copy of the window: tuples of the session's lists
                since = time.time_ns() - int(self.window_s * 1e9)
                data = session.data(since_ns=since)
                paused = session.paused
                self._sources = session.sources()
            try:
                frame = make_frame(data, pids=self.pids, ports=self.ports, paused=paused)
            except Exception as exc:
                self._error = f"analysis failed: {exc}"
                continue
            self._frame = frame
            self.frames += 1
            # the analysis holds the GIL while it computes: leave the collector at least twice that
            wait_s = max(self.refresh_s, 2 * frame.compute_s)

    def latest(self) -> TopFrame | None:
        """The newest frame."""
        return self._frame

    def sources(self) -> tuple[SourceStatus, ...]:
        """Statuses as of the last frame."""
        return self._sources

    def set_paused(self, paused: bool) -> None:
        """Pause (eBPF unlinked, destroy groups left) or resume on the next collector tick."""
        self._want_pause = paused

    def close(self) -> None:
        """Stop both threads; the collector closes the session (waits up to 5 s)."""
        self._stop.set()
        for t in (self._analysis, self._collector):
            if t.is_alive():
                t.join(timeout=5.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetnsChoice:
    """One namespace offered by the ``n`` key."""

    spec: str | None
    """What :class:`~loopscope.watch.session.WatchOptions` ``netns`` takes: None for this process's
    namespace, else ``/run/netns/NAME`` or ``/proc/PID/ns/net``."""
    label: str
    """``host``, the /run/netns name, or ``pid 1234`` (the label the report carries)."""


class NetnsSwitcher(Protocol):
    """Lists namespaces and opens a frame source in one (injectable: tests pass recorded frames)."""

    def choices(self) -> list[NetnsChoice]:
        """The namespaces to offer, this one first."""
        ...

    def open(self, spec: str | None) -> FrameSource:
        """A new source in ``spec``.

        Raises:
            LoopscopeError: the namespace is gone or the session could not start there.
        """
        ...


def _pid_namespaces(proc: str = "/proc") -> dict[NetnsId, int]:
    """Namespace -> lowest pid inside it, from ``/proc/PID/ns/net`` (processes we may not stat are
    skipped: their namespaces are listed only when named under /run/netns)."""
    found: dict[NetnsId, int] = {}
    for name in sorted((n for n in os.listdir(proc) if n.isdigit()), key=int):
        try:
            st = os.stat(f"{proc}/{name}/ns/net")
        except OSError:  # exited, or another user's process without root: not a namespace we list
            continue
        found.setdefault(NetnsId(st.st_dev, st.st_ino), int(name))
    return found


def list_namespaces(proc: str = "/proc") -> list[NetnsChoice]:
    """Every distinct network namespace, as ``--all-netns`` reads them
    (:func:`~loopscope.backends.linux.netns.list_netns`): host first, then /run/netns names, then
    namespaces seen only through a process (containers), e.g. ``[host, blue, pid 4242]``."""
    return [
        NetnsChoice(spec=None if t.label == "host" else t.path, label=t.label)
        for t in list_netns(_pid_namespaces(proc))
    ]


class SessionSwitcher:
    """Opens :class:`SessionSource` with the same options in another namespace."""

    def __init__(
        self,
        options: WatchOptions,
        *,
        pids: tuple[int, ...] = (),
        ports: tuple[int, ...] = (),
        window_s: float = 10.0,
        refresh_s: float = 1.0,
    ) -> None:
        self.options = options
        self.pids, self.ports = pids, ports
        self.window_s, self.refresh_s = window_s, refresh_s

    def choices(self) -> list[NetnsChoice]:
        """:func:`list_namespaces`."""
        return list_namespaces()

    def open(self, spec: str | None) -> SessionSource:
        """A live session in ``spec`` (checked first, so a vanished namespace is a one-line error)."""
        resolve_netns(spec)
        return SessionSource(
            replace(self.options, netns=spec),
            pids=self.pids,
            ports=self.ports,
            window_s=self.window_s,
            refresh_s=self.refresh_s,
        )
