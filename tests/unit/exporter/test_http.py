"""HTTP requests per edge: the drain thread's counting with a fake capture and fake client names
(client found / unknown, status classes, port set handed over), and the totals' labels (server app by
address then wildcard, self_call, the client_app bound, hostile names kept verbatim for escaping)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loopscope.backends.linux.bpf.counter import ClientEntry
from loopscope.exporter.http import HttpCounts, HttpTake, HttpTotals, http_families, status_class
from loopscope.exporter.metrics import CountTotals
from loopscope.model import Endpoint
from loopscope.model.events import HttpEvent, HttpKind

LO = ipaddress.IPv4Address("127.0.0.1")


class _Capture:
    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = frozenset(ports)
        self.queued: list[HttpEvent] = []
        self.closed = False

    def drain(self) -> list[HttpEvent]:
        out, self.queued = self.queued, []
        return out

    def drops(self) -> int:
        return 2

    def close(self) -> None:
        self.closed = True


IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Names:
    """The kernel map's answers: port 40001 connected a second before the test's packets, 40002 too
    (a hostile comm), 40004 connected 10 s after them (the 4-tuple came round: a later connection)."""

    def __init__(self) -> None:
        self.lookups = 0
        now = time.monotonic_ns()
        self.entries = {
            40001: ClientEntry(comm="worker", connected_ns=now - 1_000_000_000),
            40002: ClientEntry(comm='ev"l\n{x}', connected_ns=now - 1_000_000_000),
            40004: ClientEntry(comm="later", connected_ns=now + 10_000_000_000),
        }

    def client_entry(
        self, client: tuple[IP, int], server: tuple[IP, int], netns_cookie: int
    ) -> ClientEntry | None:
        self.lookups += 1
        if netns_cookie != 9 or server[1] != 8080:
            return None
        return self.entries.get(client[1])


def _req(cport: int, sport: int = 8080) -> HttpEvent:
    return HttpEvent(
        at_ns=time.time_ns(),
        kind=HttpKind.REQUEST,
        client=Endpoint(LO, cport),
        server=Endpoint(LO, sport),
        method="GET",
        path="/",
    )


def _resp(cport: int, status: int) -> HttpEvent:
    return HttpEvent(
        at_ns=time.time_ns(),
        kind=HttpKind.RESPONSE,
        client=Endpoint(LO, cport),
        server=Endpoint(LO, 8080),
        status=status,
    )


def test_status_class() -> None:
    assert status_class(200) == "2xx" and status_class(503) == "5xx" and status_class(42) == "other"


def test_drain_names_clients_once_per_endpoint_and_counts_the_unknown() -> None:
    captures: list[_Capture] = []

    def open_capture(ports: Sequence[int]) -> _Capture:
        captures.append(_Capture(ports))
        return captures[-1]

    names = _Names()
    http = HttpCounts(names, 9, open_capture=open_capture)  # type: ignore[arg-type]
    http.set_ports([8080])
    http._apply_ports()
    cap = captures[0]
    assert cap.ports == {8080}
    cap.queued = [_req(40001), _req(40001), _resp(40001, 200), _req(40003), _resp(40003, 502)]
    cap.queued += [_req(40004), _req(40001, sport=8081)]  # a later connection; another server
    http.drain()
    assert names.lookups == 4  # one per 4-tuple in a drain
    take = http.take()
    assert take.requests == {
        ("worker", LO, 8080, "GET"): 2,
        (None, LO, 8080, "GET"): 2,  # 40003 unknown, 40004's entry is newer than the packet
        (None, LO, 8081, "GET"): 1,  # same client port, another server: not "worker"
    }
    assert take.responses == {("worker", LO, 8080, "2xx"): 1, (None, LO, 8080, "5xx"): 1}
    assert take.unresolved == 4 and take.drops == 2 and take.up
    assert http.take().requests == {}  # taken once
    http.stop()
    assert cap.closed


def test_no_ports_opens_nothing_and_reports_down() -> None:
    http = HttpCounts(None, 9, open_capture=lambda ports: _Capture(ports))  # type: ignore[arg-type,return-value]
    http._apply_ports()
    assert not http.take().up


def test_totals_label_edges_self_calls_and_fold_clients() -> None:
    server_app_of: dict[tuple[int, object, int], str] = {
        (9, None, 8080): "app",
        (9, LO, 9090): "db",
    }
    totals = HttpTotals()
    clients = CountTotals(max_client_apps=1)
    take = HttpTake(
        requests={
            ("app", LO, 8080, "GET"): 3,
            ("loadgen", LO, 8080, "GET"): 1,  # beyond the bound of 1: other
            (None, LO, 8080, "POST"): 2,
            ("app", LO, 9090, "GET"): 4,
            ("app", LO, 7000, "GET"): 1,  # no listener known: unknown server
        },
        responses={("app", LO, 8080, "2xx"): 3},
        unresolved=2,
        up=True,
    )
    totals.add(take, server_app_of, 9, clients.client_app)
    totals.add(take, server_app_of, 9, clients.client_app)  # cumulative
    assert totals.requests == {
        ("app", "app", 8080, "GET", True): 6,
        ("other", "app", 8080, "GET", False): 2,
        ("unknown", "app", 8080, "POST", False): 4,
        ("app", "db", 9090, "GET", False): 8,
        ("app", "unknown", 7000, "GET", False): 2,
    }
    assert totals.responses == {("app", "app", 8080, "2xx", True): 6}
    assert totals.unresolved == 4


def test_a_hostile_client_name_is_escaped_and_parses_back() -> None:
    hostile = 'ev"l\n{x}\\q'
    totals = HttpTotals(requests={(hostile, "app", 8080, "GET", False): 5})

    class _Fams:
        def collect(self) -> list:  # type: ignore[type-arg]
            return http_families(totals)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fams())
    text = generate_latest(registry).decode()
    assert "\n{x}" not in text
    got = {
        s.labels["client_app"]: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "loopscope_http_requests_total"
    }
    assert got == {hostile: 5.0}
