"""The exporter's pure half: running totals by deltas, the client-app bound, self vs external, and an
exposition that parses with hostile names (escaped by prometheus-client)."""

from __future__ import annotations

import ipaddress

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from loopscope.backends.linux.bpf.counter import ConnectionCount
from loopscope.exporter.metrics import OTHER_APP, CountTotals, Health, traffic_families
from loopscope.model import Family

LO = ipaddress.IPv4Address("127.0.0.1")
HEALTH = Health(
    connection_source="ebpf_counter",
    connection_source_reason="",
    map_full=3,
    map_entries=2,
    map_capacity=16,
    scrape_duration_s=0.01,
    cpu_s=1.5,
    gaps=0,
)


def _c(comm: str | None, n: int, port: int = 8080, peer_local: bool = True) -> ConnectionCount:
    return ConnectionCount(
        passive=comm is None,
        client_comm=comm,
        family=Family.INET,
        address=LO,
        port=port,
        netns_cookie=1,
        peer_local=peer_local,
        count=n,
    )


def _exposition(totals: CountTotals) -> str:
    class _Fixed(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return traffic_families(totals, HEALTH)

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Fixed())
    return generate_latest(reg).decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_self_and_external_from_cumulative_counts() -> None:
    totals = CountTotals()
    apps = {(1, LO, 8080): "web"}
    # 10 external requests (client "curl"), each making 3 self-calls (client "web")
    totals.add([_c("curl", 10), _c("web", 30), _c(None, 40)], apps)
    assert totals.self_calls == {"web": 30}
    assert totals.external == {"web": 10}
    assert totals.edges[("web", "web", 8080, True)] == 30
    assert totals.edges[("curl", "web", 8080, False)] == 10
    # the next read adds only the deltas
    totals.add([_c("curl", 12), _c("web", 36), _c(None, 48)], apps)
    assert totals.external == {"web": 12} and totals.self_calls == {"web": 36}
    assert totals.counted == 96


def test_a_label_change_never_makes_a_series_go_down() -> None:
    totals = CountTotals()
    totals.add([_c("curl", 5)], {})  # listener not known yet
    totals.add([_c("curl", 8)], {(1, None, 8080): "web"})  # a wildcard listener appears
    assert totals.edges[("curl", "unknown", 8080, False)] == 5
    assert totals.edges[("curl", "web", 8080, False)] == 3


def test_client_apps_beyond_the_bound_fold_into_other() -> None:
    totals = CountTotals(max_client_apps=3)
    totals.add([_c(f"job{i}", 1) for i in range(10)], {})
    clients = {k[0] for k in totals.edges}
    assert len(clients) == 4 and OTHER_APP in clients
    assert totals.edges[(OTHER_APP, "unknown", 8080, False)] == 7


def test_hostile_names_are_escaped_and_parse_back() -> None:
    hostile = 'x"\n{a}\\'
    totals = CountTotals()
    totals.add([_c(hostile, 4), _c(None, 4)], {(1, LO, 8080): 'srv"}'})
    text = _exposition(totals)
    assert "\n{a}" not in text  # the newline is escaped, never raw
    got = _samples(text)
    key = (
        "loopscope_loopback_connections_total",
        (
            ("client_app", hostile),
            ("port", "8080"),
            ("self_call", "false"),
            ("server_app", 'srv"}'),
        ),
    )
    assert got[key] == 4.0
    assert got[("loopscope_exporter_events_lost_total", (("reason", "map_full"),))] == 3.0
