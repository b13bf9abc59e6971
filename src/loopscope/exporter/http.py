"""HTTP requests per edge (``loopscope exporter --http``).

HTTP/1.x start lines are captured on ``lo`` of the exporter's namespace
(:class:`~loopscope.backends.linux.http_capture.HttpCapture`: AF_PACKET, a classic BPF filter on the
listeners' ports, CAP_NET_RAW) and drained every ``drain_interval_s`` by a thread, which names each
request's client right away: the kernel counter remembers, per connection (client and server
address and port, netns cookie), the comm of the process that connected and when (an LRU map written
at connect time, :meth:`~loopscope.backends.linux.bpf.counter.ConnectionCounter.client_entry`). An
entry made after the packet was captured belongs to a later connection on the same 4-tuple (ephemeral
ports come round in seconds on a busy host) and names nobody. A client that is not found (connected
before the exporter started, evicted, its 4-tuple reused before the drain, no kernel counter) is
``unknown``, counted.
The server app is the listener's owner, applied at scrape time by :class:`HttpTotals` (values in,
values out), with the same client_app bound as the connection counters.

The port set follows the listeners: the scrape hands the current set over (:meth:`HttpCounts.set_ports`)
and the thread swaps the socket's filter in place (SO_ATTACH_FILTER replaces it atomically: no packet
is lost or seen twice, as closing one capture and opening another would).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from loopscope.analysis.scope import unmap
from loopscope.errors import LoopscopeError
from loopscope.model.events import HttpEvent, HttpKind

if TYPE_CHECKING:
    from loopscope.backends.linux.bpf.counter import ClientEntry
    from loopscope.backends.linux.http_capture import HttpCapture

__all__ = [
    "REUSE_SLACK_NS",
    "ClientNames",
    "HttpCounts",
    "HttpTake",
    "HttpTotals",
    "http_families",
    "status_class",
]

log = logging.getLogger("loopscope.exporter")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (client comm or None, server address, server port, method or status class)
PendingKey = tuple[str | None, IPAddress, int, str]
_UNKNOWN, _OTHER = "unknown", "other"  # as metrics.UNKNOWN_APP / OTHER_APP


REUSE_SLACK_NS = 5_000_000
"""An entry's connect time may be up to this much after a packet's and still name it (ns): the
packet's CLOCK_REALTIME stamp is moved to CLOCK_MONOTONIC with the offset read at the drain, which
a clock slew since the capture can move by a little."""


class ClientNames(Protocol):
    """Where client comms come from (the kernel counter's LRU map)."""

    def client_entry(
        self, client: tuple[IPAddress, int], server: tuple[IPAddress, int], netns_cookie: int
    ) -> ClientEntry | None:
        """Who made the last connect from ``client`` to ``server`` in the namespace and when
        (CLOCK_MONOTONIC ns), None if unknown."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpTake:
    """What the capture thread counted since the previous take."""

    requests: Mapping[PendingKey, int] = field(default_factory=dict)
    """(client comm or None, server address, port, method) -> requests."""
    responses: Mapping[PendingKey, int] = field(default_factory=dict)
    """(client comm or None, server address, port, status class ``2xx``) -> responses."""
    unresolved: int = 0
    """Requests and responses whose client was not found (or whose entry is newer than them)."""
    drops: int = 0
    """Packets the kernel dropped for the capture socket (cumulative)."""
    up: bool = False
    """The capture socket is open."""


@dataclass(slots=True)
class HttpTotals:
    """Running totals of the HTTP counters (monotonic: increments folded in at each scrape)."""

    requests: dict[tuple[str, str, int, str, bool], int] = field(default_factory=dict)
    """(client_app, server_app, port, method, self_call) -> requests."""
    responses: dict[tuple[str, str, int, str, bool], int] = field(default_factory=dict)
    """(client_app, server_app, port, status class, self_call) -> responses."""
    unresolved: int = 0
    """Events whose client was not found (labelled ``unknown``)."""
    drops: int = 0
    """Capture packets dropped by the kernel (cumulative)."""
    up: bool = False
    """The capture runs."""

    def add(
        self,
        take: HttpTake,
        server_app_of: Mapping[tuple[int, object, int], str],
        netns_cookie: int,
        client_app: Callable[[str], str],
    ) -> None:
        """Fold one take in.

        Args:
            take: from :meth:`HttpCounts.take`.
            server_app_of: ``(netns cookie, unmapped address or None, port) -> app``
                (:func:`~loopscope.exporter.collector.server_apps`).
            netns_cookie: the capture's namespace.
            client_app: comm -> bounded client_app label (``other`` beyond the bound).
        """
        for pending, totals in ((take.requests, self.requests), (take.responses, self.responses)):
            for (comm, address, port, what), n in pending.items():
                server = server_app_of.get(
                    (netns_cookie, unmap(address), port),
                    server_app_of.get((netns_cookie, None, port), _UNKNOWN),
                )
                client = _UNKNOWN if comm is None else client_app(comm or _UNKNOWN)
                is_self = client == server and server != _UNKNOWN
                key = (client, server, port, what, is_self)
                totals[key] = totals.get(key, 0) + n
        self.unresolved += take.unresolved
        self.drops, self.up = take.drops, take.up


def http_families(totals: HttpTotals) -> list[Metric]:
    """The HTTP counters and the capture's health."""
    requests = CounterMetricFamily(
        "loopscope_http_requests",
        "HTTP/1.x requests over loopback (start lines captured on lo), by client app, server app, "
        "server port and method; self_call=true when both are the same app. With --http.",
        labels=["client_app", "server_app", "port", "method", "self_call"],
    )
    for (client, server, port, method, is_self), n in sorted(totals.requests.items()):
        requests.add_metric([client, server, str(port), method, str(is_self).lower()], float(n))
    responses = CounterMetricFamily(
        "loopscope_http_responses",
        "HTTP/1.x responses over loopback by client app, server app, server port and status class "
        "(2xx, 5xx...). With --http.",
        labels=["client_app", "server_app", "port", "code_class", "self_call"],
    )
    for (client, server, port, code, is_self), n in sorted(totals.responses.items()):
        responses.add_metric([client, server, str(port), code, str(is_self).lower()], float(n))
    unresolved = CounterMetricFamily(
        "loopscope_exporter_http_clients_unresolved",
        "HTTP requests and responses whose client was not found in the kernel's client map "
        "(client_app=unknown): connected before the exporter started, evicted, or its 4-tuple "
        "reused by a later connection before the drain.",
    )
    unresolved.add_metric([], float(totals.unresolved))
    up = GaugeMetricFamily(
        "loopscope_exporter_http_capture_up", "The HTTP capture on lo runs (1) or not (0)."
    )
    up.add_metric([], 1.0 if totals.up else 0.0)
    drops = CounterMetricFamily(
        "loopscope_exporter_http_packets_dropped",
        "Packets the kernel dropped for the HTTP capture socket (its queue was full).",
    )
    drops.add_metric([], float(totals.drops))
    return [requests, responses, unresolved, up, drops]


def status_class(status: int) -> str:
    """``503`` -> ``"5xx"``; anything outside 100-599 -> ``"other"``."""
    return f"{status // 100}xx" if 100 <= status <= 599 else _OTHER


def _open_capture(ports: Sequence[int]) -> HttpCapture:
    from loopscope.backends.linux.http_capture import HttpCapture

    return HttpCapture(ports)


class HttpCounts:
    """The capture and its drain thread; :meth:`take` hands the counts to the scrape.

    Args:
        names: connection -> (comm, connect time) (the kernel counter), or None (every client
            ``unknown``).
        netns_cookie: the exporter's namespace cookie (the client map's key part).
        drain_interval_s: seconds between drains (the client map must still hold the endpoint).
        open_capture: ``ports -> HttpCapture`` (injectable).
    """

    def __init__(
        self,
        names: ClientNames | None,
        netns_cookie: int,
        *,
        drain_interval_s: float = 0.5,
        open_capture: Callable[[Sequence[int]], HttpCapture] = _open_capture,
    ) -> None:
        self.names = names
        self.netns_cookie = netns_cookie
        self.drain_interval_s = drain_interval_s
        self.open_capture = open_capture
        self.reason = ""
        """Why the capture is not running (empty while it runs)."""
        self._wanted: frozenset[int] = frozenset()
        self._capture: HttpCapture | None = None
        self._lock = threading.Lock()
        self._requests: Counter[PendingKey] = Counter()
        self._responses: Counter[PendingKey] = Counter()
        self._unresolved = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False

    def set_ports(self, ports: Iterable[int]) -> None:
        """The listeners' ports now (the thread applies them at its next drain)."""
        self._wanted = frozenset(ports)

    def start(self) -> None:
        """Open the capture on the ports set so far (now, so that requests from the first second
        count) and start the drain thread. A capture that cannot open (no CAP_NET_RAW) is logged
        and reported as down; the thread then does nothing."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._apply_ports()
        self._thread = threading.Thread(target=self._loop, name="loopscope-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, drain a last time, close the capture. Idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(10)
        if self._capture is not None:
            self.drain()
            self._capture.close()
            self._capture = None

    def _loop(self) -> None:
        while not self._stop.wait(self.drain_interval_s):
            try:
                self.drain()
                self._apply_ports()
            except Exception:  # the thread must outlive one bad pass; logged with its traceback
                log.exception("http capture drain failed")

    def _apply_ports(self) -> None:
        wanted = self._wanted
        if self._capture is None:
            if not wanted or self._failed:
                return
            try:
                self._capture = self.open_capture(sorted(wanted))
                self.reason = ""
            except (LoopscopeError, OSError) as exc:
                self._failed = True
                self.reason = str(exc)
                log.warning("HTTP counting unavailable: %s", exc)
            return
        if wanted != self._capture.ports:
            self.drain()  # queued segments are judged by the ports they were captured for
            self._capture.set_ports(wanted)

    def drain(self) -> None:
        """Read what the capture queued, name each event's client, add to the pending counts."""
        capture = self._capture
        if capture is None:
            return
        events = capture.drain()
        # SO_TIMESTAMPNS is CLOCK_REALTIME, the connect times CLOCK_MONOTONIC
        real_to_mono_ns = time.monotonic_ns() - time.time_ns()
        names: dict[tuple[IPAddress, int, IPAddress, int], ClientEntry | None] = {}
        requests: Counter[PendingKey] = Counter()
        responses: Counter[PendingKey] = Counter()
        unresolved = 0
        for ev in events:
            comm = self._client_comm(ev, names, ev.at_ns + real_to_mono_ns)
            unresolved += comm is None
            if ev.kind is HttpKind.REQUEST:
                requests[(comm, ev.server.address, ev.server.port, ev.method or "")] += 1
            elif ev.status is not None:
                key = (comm, ev.server.address, ev.server.port, status_class(ev.status))
                responses[key] += 1
        with self._lock:
            self._requests.update(requests)
            self._responses.update(responses)
            self._unresolved += unresolved

    def _client_comm(
        self,
        ev: HttpEvent,
        names: dict[tuple[IPAddress, int, IPAddress, int], ClientEntry | None],
        seen_mono_ns: int,
    ) -> str | None:
        """The comm of the connection ``ev`` was captured on: None when not remembered, or when the
        entry was made after the packet (a later connection on the same 4-tuple)."""
        key = (ev.client.address, ev.client.port, ev.server.address, ev.server.port)
        if key not in names:
            names[key] = (
                None
                if self.names is None
                else self.names.client_entry(key[:2], key[2:], self.netns_cookie)
            )
        entry = names[key]
        if entry is None or entry.connected_ns > seen_mono_ns + REUSE_SLACK_NS:
            return None
        return entry.comm

    def take(self) -> HttpTake:
        """The counts since the previous take (and the capture's state)."""
        capture = self._capture
        with self._lock:
            requests, self._requests = self._requests, Counter()
            responses, self._responses = self._responses, Counter()
            unresolved, self._unresolved = self._unresolved, 0
        return HttpTake(
            requests=requests,
            responses=responses,
            unresolved=unresolved,
            drops=capture.drops() if capture is not None else 0,
            up=capture is not None,
        )
