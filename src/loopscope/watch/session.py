"""The watch collector: opens the event sources that work here, drains them on a tick, takes periodic
snapshots, and hands a :class:`~loopscope.analysis.watch.model.WatchData` to the pure analysis.

Source choice (this one place), best first, each reported as a SourceStatus and a Gap when off:
1. eBPF sockops on the root cgroup v2 (root): every connect with the client pid.
2. sock_diag destroy multicast (unprivileged, per netns): every closed TCP socket with its 4-tuple,
   cookie and tcp_info.
3. sock_diag snapshots + /proc fd scan (``watch.snapshots`` on the collector): listeners, owners, accept
   queues, keep-alive connections, TIME_WAIT, ephemeral ports.
4. ``--http`` (root): AF_PACKET capture on lo of HTTP/1.x request and status lines.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loopscope.analysis.watch.model import SnapshotSample, WatchData, sample_snapshot
from loopscope.backends.linux.netns import resolve_netns, run_in_netns
from loopscope.errors import LoopscopeError
from loopscope.model import Gap, ProcessInfo, ProcessKey, Snapshot
from loopscope.model.events import CloseEvent, ConnectEvent, ConnectKind, HttpEvent, SourceStatus
from loopscope.watch.snapshots import WatchSnapshots

if TYPE_CHECKING:
    from loopscope.backends.linux.bpf.sockops import SockopsCollector
    from loopscope.backends.linux.http_capture import HttpCapture
    from loopscope.backends.linux.sock_diag_destroy import DestroySubscription

__all__ = ["WatchOptions", "WatchSession", "run_watch"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchOptions:
    """What to watch and how."""

    netns: str | None = None
    """Namespace spec (None: this one)."""
    ebpf: bool = True
    """Try the eBPF sockops source (needs root)."""
    destroy: bool = True
    """Use sock_diag destroy events."""
    http: bool = False
    """Capture HTTP/1.x lines on lo (needs root)."""
    http_ports: tuple[int, ...] = ()
    """Ports to capture HTTP on; default: every TCP listener port seen in the first snapshot."""
    snapshot_interval_s: float = 1.0
    """Seconds between listener reads (accept queues)."""
    full_interval_s: float = 5.0
    """Least seconds between full reads (established pools, owners, TIME_WAIT); stretched to 20x the
    last full read's duration on busy hosts, so they stay near 5% of a core."""
    drain_interval_s: float = 0.2
    """Seconds between event drains."""
    ebpf_run_stats: bool = False
    """Have the kernel time every sockops run (for benchmarks; adds two clock reads per run)."""


@dataclass(slots=True)
class _State:
    connects: list[ConnectEvent] = field(default_factory=list)
    closes: list[CloseEvent] = field(default_factory=list)
    http: list[HttpEvent] = field(default_factory=list)
    samples: list[SnapshotSample] = field(default_factory=list)
    processes: dict[int, ProcessInfo] = field(default_factory=dict)
    unresolved_pids: set[int] = field(default_factory=set)
    gaps: list[Gap] = field(default_factory=list)


def _read_pid(pid: int) -> ProcessInfo | None:
    from loopscope.backends.linux import procfs

    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            _comm, _ppid, _pgid, ticks = procfs.parse_stat(fh.read())
    except (OSError, LoopscopeError):
        return None
    return procfs.read_process(ProcessKey(pid, ticks))


class WatchSession:
    """Open sources; call :meth:`poll` often and :meth:`data` for the window so far; :meth:`close` at the end.

    Raises:
        LoopscopeError: the namespace is unknown, or the first snapshot fails (no source at all).
    """

    def __init__(self, options: WatchOptions = WatchOptions()) -> None:
        self.options = options
        self.state = _State()
        self._ebpf: SockopsCollector | None = None
        self._destroy: DestroySubscription | None = None
        self._packet: HttpCapture | None = None
        self._netns_cookie: int | None = None
        self._statuses: dict[str, SourceStatus] = {}
        self.started_ns = time.time_ns()
        self._target = resolve_netns(options.netns)
        self._reader = WatchSnapshots(self._target)
        self._next_full = 0.0
        self._last_full = 0.0
        self.full_snapshot_s: list[float] = []
        self._paused_at: float | None = None
        self.paused_s = 0.0
        self.pauses = 0
        try:
            first = self._snapshot()
            self.netns_label = first.netns_label
            self._open_sources(first)
        except BaseException:
            self.close()  # detach whatever was already loaded
            raise
        self.started_ns = time.time_ns()  # the window starts when every source is live
        self._next_snapshot = time.monotonic() + options.snapshot_interval_s

    def _status(self, name: str, active: bool, reason: str) -> None:
        self._statuses[name] = SourceStatus(name=name, active=active, reason=reason)
        if not active:
            self.state.gaps.append(Gap(what=name, reason=reason))

    def _open_sources(self, first: Snapshot) -> None:
        opts = self.options
        if opts.ebpf:
            try:
                from loopscope.backends.linux.bpf.sockops import (
                    SockopsCollector,
                    netns_cookie_of_current,
                )

                self._netns_cookie = run_in_netns(self._target, netns_cookie_of_current)
                ebpf = SockopsCollector(only_netns_cookie=self._netns_cookie)
                self._ebpf = ebpf
                if opts.ebpf_run_stats:
                    ebpf.enable_run_stats()
                if not ebpf.has_netns_cookie:
                    self._netns_cookie = None
                    self.state.gaps.append(
                        Gap(
                            what="namespace of eBPF events",
                            reason="kernel < 5.15 has no "
                            "bpf_get_netns_cookie for sockops: connects from every namespace count",
                        )
                    )
                self._status(
                    "ebpf_sockops",
                    True,
                    f"sockops on cgroup {ebpf.cgroup_path}: client pid "
                    + ("and name " if ebpf.has_comm else "")
                    + "of every connect",
                )
            except LoopscopeError as exc:
                self._status(
                    "ebpf_sockops", False, f"{exc}; short-lived connections have no client pid"
                )
        else:
            self._status(
                "ebpf_sockops",
                False,
                "turned off (--no-ebpf); short-lived connections have no client pid",
            )
        if opts.destroy:
            try:
                from loopscope.backends.linux.sock_diag_destroy import DestroySubscription

                destroy = DestroySubscription(opts.netns)
                self._destroy = destroy
                self._status("sock_diag_destroy", True, f"destroy events of netns {destroy.label}")
            except LoopscopeError as exc:
                self._status(
                    "sock_diag_destroy",
                    False,
                    f"{exc}; closes and bytes of short connections unseen",
                )
        else:
            self._status("sock_diag_destroy", False, "turned off")
        self._status(
            "snapshots",
            True,
            f"listeners, established, TIME_WAIT every {opts.snapshot_interval_s:g} s",
        )
        if opts.http:
            ports = opts.http_ports or tuple(
                sorted({s.local.port for s in first.sockets if s.state.value == "LISTEN"})
            )
            try:
                from loopscope.backends.linux.http_capture import HttpCapture

                self._packet = HttpCapture(ports, netns=opts.netns)
                self._status(
                    "http_capture",
                    True,
                    f"HTTP/1.x lines on lo for {len(ports)} ports; TLS and "
                    "HTTP/2 are counted at connection level only",
                )
            except LoopscopeError as exc:
                self._status("http_capture", False, f"{exc}; requests are counted as connections")
        if self._ebpf is None and self._destroy is not None:
            self.state.gaps.append(
                Gap(
                    what="self-calls on short-lived connections",
                    reason="without eBPF their client process is unknown (shown as '?'): run as root",
                )
            )

    def _snapshot(self) -> Snapshot:
        full = time.monotonic() >= self._next_full
        light = self._reader.read(full)
        snap = light.snapshot
        if full:
            took_s = (snap.duration_ns or 0) / 1e9
            self.full_snapshot_s.append(took_s)
            self._last_full = time.monotonic()
            # keep the full reads near 5% of one core: wait 20x what the last one took
            self._next_full = time.monotonic() + max(self.options.full_interval_s, 20 * took_s)
        self.state.samples.append(
            sample_snapshot(
                snap,
                light.time_wait_by_dest,
                time_wait_other=light.time_wait_other,
                listeners_only=not full,
            )
        )
        for gap in snap.gaps:  # the latest count per kind of gap
            if "exited" not in gap.reason:
                self.state.gaps[:] = [g for g in self.state.gaps if g.reason != gap.reason] + [gap]
        return snap

    @property
    def paused(self) -> bool:
        """Whether :meth:`pause` is in effect."""
        return self._paused_at is not None

    def pause(self) -> None:
        """Drain, then stop collecting without closing: the eBPF program is unlinked and the destroy
        groups are left, so the kernel does no work for the watch until :meth:`resume`; polls do
        nothing meanwhile. Connections made while paused are not counted (the report says for how
        long). The HTTP capture, when on, keeps running. No-op when paused.

        Raises:
            LoopscopeError: a source could not be detached.
        """
        if self._paused_at is not None:
            return
        self.poll()
        if self._ebpf is not None:
            self._ebpf.detach()
        if self._destroy is not None:
            self._destroy.leave()
        self._paused_at = time.monotonic()

    def resume(self) -> None:
        """Attach the sources again after :meth:`pause`. No-op when not paused.

        Raises:
            LoopscopeError: a source could not be attached again.
        """
        if self._paused_at is None:
            return
        if self._ebpf is not None:
            self._ebpf.attach()
        if self._destroy is not None:
            self._destroy.join()
        self.paused_s += time.monotonic() - self._paused_at
        self.pauses += 1
        self._paused_at = None

    def poll(self) -> None:
        """Drain the event sources; take a snapshot when one is due. Nothing while paused."""
        if self._paused_at is not None:
            return
        st = self.state
        if self._ebpf is not None:
            events = self._ebpf.drain()
            if self._netns_cookie is not None:
                mine = self._netns_cookie
                events = [e for e in events if e.netns_cookie in (None, mine)]
            st.connects.extend(events)
            for ev in events:
                if (
                    ev.kind is ConnectKind.ACTIVE
                    and ev.pid is not None
                    and ev.pid not in st.processes
                    and ev.pid not in st.unresolved_pids
                ):
                    info = _read_pid(ev.pid)
                    if info is None:
                        st.unresolved_pids.add(ev.pid)
                    else:
                        st.processes[ev.pid] = info
        if self._destroy is not None:
            st.closes.extend(self._destroy.drain())
        if self._packet is not None:
            st.http.extend(self._packet.drain())
        if time.monotonic() >= self._next_snapshot:
            self._next_snapshot += self.options.snapshot_interval_s
            self._snapshot()

    def final_snapshot(self) -> None:
        """One more full read at the end of the window when the last one is older than the snapshot
        interval: connections opened since then and still open (a keep-alive pool started during the
        window) get their owners in the report, as they would have at the next full read. Costs one
        full read; nothing while paused.

        Raises:
            BackendUnavailable / NetlinkError: sock_diag is not usable.
        """
        if self._paused_at is not None:
            return
        if time.monotonic() - self._last_full < self.options.snapshot_interval_s:
            return
        self._next_full = 0.0
        self._snapshot()

    def ebpf_run_stats(self) -> tuple[int, int] | None:
        """``(program runs, total ns in the kernel)`` when eBPF is on (zeros unless ``ebpf_run_stats``)."""
        return self._ebpf.run_stats() if self._ebpf is not None else None

    def sources(self) -> tuple[SourceStatus, ...]:
        """Status of every source with its event and drop counts so far."""
        from dataclasses import replace

        out = []
        for name, status in self._statuses.items():
            if name == "ebpf_sockops" and self._ebpf is not None:
                status = replace(status, events=self._ebpf.events_read, dropped=self._ebpf.drops())
            elif name == "sock_diag_destroy" and self._destroy is not None:
                status = replace(
                    status, events=self._destroy.events_read, dropped=self._destroy.overflows
                )
            elif name == "snapshots":
                status = replace(status, events=len(self.state.samples))
            elif name == "http_capture" and self._packet is not None:
                status = replace(
                    status, events=self._packet.events_read, dropped=self._packet.drops()
                )
            out.append(status)
        return tuple(out)

    def trim(self, before_ns: int) -> None:
        """Forget events and samples older than ``before_ns`` (bounds memory in an open-ended watch);
        the window then starts there."""
        st = self.state
        if before_ns <= self.started_ns:
            return
        st.connects = [e for e in st.connects if e.at_ns >= before_ns]
        st.closes = [e for e in st.closes if e.at_ns >= before_ns]
        st.http = [e for e in st.http if e.at_ns >= before_ns]
        st.samples = [x for x in st.samples if x.at_ns >= before_ns] or st.samples[-1:]
        self.started_ns = before_ns

    def data(self, since_ns: int | None = None) -> WatchData:
        """The window so far, or only its part from ``since_ns`` (the live view's recent rates)."""
        st = self.state
        if since_ns is not None and since_ns > self.started_ns:
            recent = [x for x in st.samples if x.at_ns >= since_ns] or st.samples[-1:]
            return WatchData(
                started_ns=since_ns,
                ended_ns=time.time_ns(),
                netns_label=self.netns_label,
                connects=tuple(e for e in st.connects if e.at_ns >= since_ns),
                closes=tuple(e for e in st.closes if e.at_ns >= since_ns),
                http=tuple(e for e in st.http if e.at_ns >= since_ns),
                samples=tuple(recent),
                processes=dict(st.processes),
                sources=self.sources(),
                gaps=tuple(st.gaps),
            )
        gaps = list(st.gaps)
        if self.pauses or self._paused_at is not None:
            paused = self.paused_s + (
                time.monotonic() - self._paused_at if self._paused_at is not None else 0.0
            )
            gaps.append(
                Gap(
                    what=f"connections during {paused:.1f} s of pauses",
                    reason="collection was paused (eBPF unlinked, destroy groups left): not counted",
                    count=self.pauses + (self._paused_at is not None),
                )
            )
        if st.unresolved_pids:
            gaps.append(
                Gap(
                    what=f"details of {len(st.unresolved_pids)} client processes",
                    reason="exited before /proc was read; their pid and name (eBPF comm) are kept",
                    count=len(st.unresolved_pids),
                )
            )
        for s in self.sources():
            if s.dropped and s.name == "sock_diag_destroy":
                gaps.append(
                    Gap(
                        what=f"some {s.name} events",
                        reason=f"receive buffer overflowed {s.dropped} times "
                        "(ENOBUFS): closes lost, counts are a lower bound",
                        count=s.dropped,
                    )
                )
            elif s.dropped:
                gaps.append(
                    Gap(
                        what=f"{s.dropped} {s.name} events",
                        reason="dropped by the kernel (buffer full)",
                        count=s.dropped,
                    )
                )
        return WatchData(
            started_ns=self.started_ns,
            ended_ns=time.time_ns(),
            netns_label=self.netns_label,
            connects=tuple(st.connects),
            closes=tuple(st.closes),
            http=tuple(st.http),
            samples=tuple(st.samples),
            processes=dict(st.processes),
            sources=self.sources(),
            gaps=tuple(gaps),
        )

    def close(self) -> None:
        """Detach eBPF, leave the multicast groups, stop the capture."""
        for src in (self._ebpf, self._destroy, self._packet):
            if src is not None:
                src.close()
        self._ebpf = self._destroy = self._packet = None
        self._reader.close()

    def __enter__(self) -> WatchSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


LIVE_WINDOW_S = 10.0
"""The live view shows the last 10 s (recomputing a long window every refresh would starve the drains)."""
OPEN_ENDED_KEEP_S = 600.0
"""An open-ended watch keeps the last 10 minutes of events for its final report."""


def run_watch(
    options: WatchOptions,
    duration_s: float | None,
    on_refresh: Callable[[WatchData], None] | None = None,
    refresh_s: float = 1.0,
) -> WatchData:
    """Watch for ``duration_s`` seconds (None: until KeyboardInterrupt, keeping the last
    :data:`OPEN_ENDED_KEEP_S`), calling ``on_refresh`` every ``refresh_s`` with the last
    :data:`LIVE_WINDOW_S`; returns the whole window. A final drain runs after the last tick so the
    closes of the last connections are counted, then a final full read (:meth:`WatchSession.final_snapshot`)."""
    with WatchSession(options) as session:
        end = None if duration_s is None else time.monotonic() + duration_s
        next_refresh = time.monotonic() + refresh_s
        try:
            while end is None or time.monotonic() < end:
                time.sleep(options.drain_interval_s)
                session.poll()
                if on_refresh is not None and time.monotonic() >= next_refresh:
                    next_refresh += refresh_s
                    on_refresh(session.data(since_ns=time.time_ns() - int(LIVE_WINDOW_S * 1e9)))
                if duration_s is None:
                    session.trim(time.time_ns() - int(OPEN_ENDED_KEEP_S * 1e9))
        except KeyboardInterrupt:
            pass
        time.sleep(0.25)  # closes of the last connections arrive within a few ms
        session.poll()
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: report without it
            session.final_snapshot()  # owners of the connections opened since the last full read
        return session.data()
