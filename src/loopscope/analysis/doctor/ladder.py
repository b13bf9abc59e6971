"""The doctor's ladder: every check of every rung over one namespace's facts, in order (pure).

Rung 1 loopback stack, rung 2 local network (when gathered), rung 3 external (only with a target).
A failed rung marks the rungs above it as not meaningful (:func:`~loopscope.analysis.doctor.verdict.mark_meaningless`).
"""

from __future__ import annotations

from collections.abc import Sequence

from loopscope.analysis.doctor.facts import DoctorFacts
from loopscope.analysis.doctor.loopback import (
    check_echo,
    check_icmp,
    check_lo_ipv4,
    check_lo_ipv6,
    check_lo_link,
    check_lo_mtu,
    check_lo_routes,
    check_route_localnet,
    ip_command,
    ipv6_disabled_by,
)
from loopscope.analysis.doctor.network import (
    check_default_route,
    check_external_connect,
    check_external_dns,
    check_firewall,
    check_host_addresses,
    check_host_echoes,
    check_interfaces,
)
from loopscope.analysis.doctor.ports import (
    check_conntrack,
    check_ephemeral,
    check_somaxconn,
    check_time_wait,
)
from loopscope.analysis.doctor.resolution import (
    check_listener_families,
    check_localhost,
    check_localhost_mismatch,
)
from loopscope.analysis.doctor.verdict import CheckResult, RungResult, build_rung, mark_meaningless
from loopscope.analysis.filters import filter_snapshot
from loopscope.analysis.listeners import find_listeners
from loopscope.analysis.scope import is_loopback, is_wildcard
from loopscope.analysis.stack import summarize_stack
from loopscope.model import Proto, Snapshot

__all__ = ["judge", "judge_rung1"]


def _listener_labels(
    services: Snapshot,
) -> tuple[dict[int, str], list[tuple[str, int, int, str]]]:
    owners: dict[int, str] = {}
    probes: list[tuple[str, int, int, str]] = []
    for lst in find_listeners(services):
        addr = lst.local.address
        if not (is_loopback(addr) or is_wildcard(addr)):
            continue
        label = ",".join(lst.process_names) or "owner unknown"
        if lst.proto is Proto.TCP:
            owners.setdefault(lst.local.port, label)
        version = 4 if addr.version == 4 or (is_wildcard(addr) and lst.v6only is not True) else 6
        item = (str(lst.proto), version, lst.local.port, label)
        if item not in probes:
            probes.append(item)
    return owners, probes


def judge_rung1(
    facts: DoctorFacts, ports: Sequence[int] = (), pids: Sequence[int] = ()
) -> list[CheckResult]:
    """Every rung 1 check, in ladder order.

    Args:
        ports, pids: ``doctor --port/--pid``: the checks about services (localhost order and family
            against listeners, firewall drops of listener ports, full accept queues) look only at
            the sockets on these ports / of these processes and their peers (each filter when
            given); the stack checks, ephemeral ports and TIME_WAIT stay whole-namespace.
    """
    services = filter_snapshot(facts.snapshot, ports, pids)
    lf = facts.loopback
    stack = facts.snapshot.stack
    ip = ip_command(facts.netns_label, facts.netns_name)
    disabled_by = ipv6_disabled_by(lf, stack.ipv6_disabled_all, stack.ipv6_disabled_lo)
    v6_on = disabled_by is None
    owners, listener_probes = _listener_labels(services)
    summary = summarize_stack(facts.snapshot)
    checks = [
        check_lo_link(lf, ip),
        check_lo_ipv4(lf, ip),
        check_lo_ipv6(lf, disabled_by, ip),
        check_lo_mtu(lf, v6_on, ip),
        check_lo_routes(lf, v6_on, ip),
        *(check_icmp(r, lf.sysctls) for r in lf.icmp),
        *(check_echo(e) for e in lf.echoes),
        check_localhost(lf.resolution),
        check_localhost_mismatch(lf.resolution, services.sockets),
        *check_listener_families(lf.resolution, services.sockets, owners=owners),
        check_firewall(lf.firewall, listener_probes, ipv6=v6_on),
        check_route_localnet(lf, ip),
        check_ephemeral(summary),
        check_time_wait(summary, facts.snapshot.sockets),
        check_somaxconn(stack.somaxconn, services.sockets),
        check_conntrack(lf.sysctls.conntrack_count, lf.sysctls.conntrack_max),
    ]
    return checks


def judge(
    facts: DoctorFacts, ports: Sequence[int] = (), pids: Sequence[int] = ()
) -> list[RungResult]:
    """All rungs gathered for one namespace, judged and linked (``ports``/``pids``: see
    :func:`judge_rung1`)."""
    rungs = [build_rung(1, judge_rung1(facts, ports, pids))]
    lf = facts.loopback
    if facts.localnet is not None:
        rungs.append(
            build_rung(
                2,
                [
                    check_interfaces(lf.links),
                    check_host_addresses(lf.addresses, lf.links),
                    check_default_route(lf.main_routes, lf.links),
                    *check_host_echoes(facts.localnet.echoes),
                ],
            )
        )
    if facts.external is not None:
        rungs.append(
            build_rung(
                3, [check_external_dns(facts.external), check_external_connect(facts.external)]
            )
        )
    return mark_meaningless(rungs)
