"""Read every fact the doctor judges, inside the target network namespace (all the doctor's I/O).

Passive facts (sockets, links, addresses, StackFacts sysctls) come from the one collector
:class:`loopscope.collect.Collector` (one fd scan for every namespace); the rest (routes, extra
sysctls, firewall rulesets, ICMP, echo probes, ``localhost`` resolution) is read in one thread that
setns()'d into the namespace (:func:`loopscope.backends.linux.netns.run_in_netns`), so every socket
and subprocess it opens lives there.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from loopscope.analysis.doctor.facts import (
    DoctorFacts,
    ExternalFacts,
    LocalNetFacts,
    LoopbackFacts,
    ResolutionFacts,
)
from loopscope.analysis.doctor.resolution import order_from_hosts, parse_hosts
from loopscope.backends.linux import icmp, routes
from loopscope.backends.linux.command import run_tool
from loopscope.backends.linux.firewall import read_firewall
from loopscope.backends.linux.netns import (
    NETNS_RUN_DIR,
    NetnsTarget,
    run_in_netns,
)
from loopscope.backends.linux.sysctl import read_sysctls
from loopscope.collect import Collection, Collector, OwnerScope
from loopscope.doctor import probes
from loopscope.errors import BackendUnavailable, NetlinkError, NetnsError
from loopscope.model import InterfaceAddress, IPAddress, LinkInfo, Snapshot
from loopscope.model.echo import EchoResult, IcmpResult
from loopscope.model.routing import RouteEntry, RouteLookup

__all__ = [
    "DoctorOptions",
    "gather",
    "gather_all",
    "netns_name_of",
    "read_resolution",
]

_V4_1 = ipaddress.IPv4Address("127.0.0.1")
_V4_2 = ipaddress.IPv4Address("127.0.0.2")
_V6_1 = ipaddress.IPv6Address("::1")


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorOptions:
    """What to gather."""

    max_rung: int = 2
    """Run rungs 1..max_rung of 1-2; rung 3 runs whenever ``external`` is set."""
    external: tuple[str, int] | None = None
    """``(host, port)`` for rung 3."""
    attribute: bool = True
    """Map listeners to processes (the /proc fd scan)."""
    firewall: bool = True
    """Read nft / iptables rulesets."""
    hosts_path: str | None = None
    """Hosts file to read instead of the namespace's own (tests, or a container's file)."""
    rounds: int = 5
    """Round trips per echo probe."""
    timeout_s: float = 0.5
    """Per-probe operation timeout, seconds."""
    ports: tuple[int, ...] = ()
    """``--port``: the service checks look only at these ports (and their peers); empty: all."""
    pids: tuple[int, ...] = ()
    """``--pid``: the service checks look only at these processes' sockets; empty: all."""


def netns_name_of(target: NetnsTarget) -> str | None:
    """The /run/netns name of a target, None for the host and pid targets."""
    if target.path.startswith(NETNS_RUN_DIR + "/"):
        return target.path[len(NETNS_RUN_DIR) + 1 :]
    return None


def _hosts_path_for(target: NetnsTarget, override: str | None) -> str:
    if override:
        return override
    name = netns_name_of(target)
    if name and os.path.exists(f"/etc/netns/{name}/hosts"):
        return f"/etc/netns/{name}/hosts"
    if target.label.startswith("pid "):
        theirs = f"/proc/{target.label[4:]}/root/etc/hosts"
        try:
            if not os.path.samefile(theirs, "/etc/hosts"):
                return theirs  # a container's own hosts file
        except OSError:
            pass
    return "/etc/hosts"


def _getent_order(name: str, netns_name: str) -> tuple[tuple[IPAddress, ...], float, str | None]:
    """getaddrinfo as processes under ``ip netns exec NAME`` see it (their /etc/hosts is bind-mounted)."""
    t0 = time.perf_counter_ns()
    out, err = run_tool(["ip", "netns", "exec", netns_name, "getent", "ahosts", name])
    took_us = (time.perf_counter_ns() - t0) / 1e3
    if out is None:
        return (), took_us, err or "no answer"
    seen: list[IPAddress] = []
    for line in out.splitlines():
        if line.split() and "STREAM" in line:
            addr = ipaddress.ip_address(line.split()[0])
            if addr not in seen:
                seen.append(addr)
    return tuple(seen), took_us, None


HOSTS_MAX_BYTES = 1 << 20
"""At most this much of a hosts file is read (glibc reads it whole; 1 MiB is ~30,000 lines)."""


def read_text_capped(path: str, limit_bytes: int = HOSTS_MAX_BYTES) -> tuple[str, str | None]:
    """The first ``limit_bytes`` of a text file, cut after its last whole line, decoded as UTF-8
    with bad bytes replaced (U+FFFD), and a note when something was left out.

    ``/dev/zero`` or a runaway file costs ``limit_bytes`` of memory, not all of it.

    Returns:
        (text, note): note is None, or ``"/dev/zero: larger than 1048576 bytes; only the first
        1048576 read"``, or ``"...: not UTF-8; bad bytes replaced"``.

    Raises:
        OSError: the file cannot be opened or read.
    """
    with open(path, "rb") as fh:
        data = fh.read(limit_bytes + 1)
    notes = []
    if len(data) > limit_bytes:
        data = data[:limit_bytes]
        data = data[: data.rfind(b"\n") + 1]
        notes.append(f"larger than {limit_bytes} bytes; only the first {limit_bytes} read")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        notes.append("not UTF-8; bad bytes replaced")
    return text, (f"{path}: {'; '.join(notes)}" if notes else None)


def read_resolution(
    target: NetnsTarget, hosts_override: str | None, name: str = "localhost"
) -> ResolutionFacts:
    """The hosts file's ``localhost`` lines and the getaddrinfo order, inside the namespace's thread."""
    path = _hosts_path_for(target, hosts_override)
    try:
        text, hosts_error = read_text_capped(path)
        entries = tuple(e for e in parse_hosts(text) if name in e.names)
    except OSError as exc:
        entries, hosts_error = (), f"{path}: {exc.strerror}"
    netns_name = netns_name_of(target)
    if hosts_override is not None or path.startswith("/proc/"):
        # a file this process's getaddrinfo does not read: derive the order its readers would get
        order, took_us, error = (
            order_from_hosts(entries),
            0.0,
            (None if entries else (hosts_error or f"no {name} line")),
        )
        resolver = "hosts file, RFC 6724 order"
    elif path.startswith("/etc/netns/") and netns_name:
        order, took_us, error = _getent_order(name, netns_name)
        resolver = f"getent ahosts (ip netns exec {netns_name})"
    else:
        order, took_us, error = probes.resolve(name)
        resolver = "getaddrinfo"
    return ResolutionFacts(
        name=name,
        hosts_path=path,
        hosts_entries=entries,
        hosts_error=hosts_error,
        order=order,
        resolver=resolver,
        error=error,
        duration_us=took_us,
    )


def _host_addresses(
    addresses: Sequence[InterfaceAddress], links: Sequence[LinkInfo]
) -> list[InterfaceAddress]:
    loop = {link.index for link in links if link.loopback}
    return [a for a in addresses if a.index not in loop and not a.address.is_loopback]


@dataclass(slots=True)
class _Inside:
    loopback: LoopbackFacts
    localnet: LocalNetFacts | None
    external: ExternalFacts | None


def _inside(target: NetnsTarget, snap: Snapshot, opts: DoctorOptions) -> _Inside:
    """Runs in the namespace's thread."""
    links, addresses = snap.links, snap.addresses
    names = {link.index: link.name for link in links}
    route_list: list[RouteEntry] = []
    lookups: list[RouteLookup] = []
    route_error = None
    try:
        route_list, lookups = routes.read_routes((_V4_1, _V4_2, _V6_1), names)
    except (BackendUnavailable, NetlinkError) as exc:
        route_error = str(exc)
    sysctls = read_sysctls(link.name for link in links)
    v6_off = (not sysctls.ipv6_module) or bool(
        snap.stack.ipv6_disabled_all or snap.stack.ipv6_disabled_lo
    )
    method, why = icmp.icmp_method(snap.stack.ping_group_range)
    pings: list[IcmpResult] = [
        icmp.ping(_V4_1, method=method, skipped_reason=why, timeout_s=opts.timeout_s)
    ]
    if v6_off:
        pings.append(IcmpResult(target=_V6_1, method=method, skipped_reason="IPv6 is disabled"))
    else:
        pings.append(icmp.ping(_V6_1, method=method, skipped_reason=why, timeout_s=opts.timeout_s))
    echoes: list[EchoResult] = []
    for addr in (_V4_1, _V6_1, _V4_2):
        for fn, proto in ((probes.tcp_echo, "tcp"), (probes.udp_echo, "udp")):
            if addr.version == 6 and v6_off:
                echoes.append(
                    EchoResult(
                        proto=proto, address=addr, phase="bind", skipped_reason="IPv6 is disabled"
                    )
                )
            else:
                echoes.append(fn(addr, rounds=opts.rounds, timeout_s=opts.timeout_s))
    loopback = LoopbackFacts(
        links=links,
        addresses=addresses,
        local_routes=tuple(r for r in route_list if r.table == routes.RT_TABLE_LOCAL),
        main_routes=tuple(r for r in route_list if r.table == routes.RT_TABLE_MAIN),
        route_error=route_error,
        lookups=tuple(lookups),
        icmp=tuple(pings),
        echoes=tuple(echoes),
        resolution=read_resolution(target, opts.hosts_path),
        sysctls=sysctls,
        firewall=read_firewall() if opts.firewall else None,
    )
    localnet = None
    if opts.max_rung >= 2:
        up = {link.index for link in links if link.up}
        host_echoes = []
        for host in _host_addresses(addresses, links):
            if host.index not in up or host.address.is_link_local:
                continue  # link-local needs a scope id and is not what local clients use
            host_echoes.append(
                probes.tcp_echo(host.address, rounds=opts.rounds, timeout_s=opts.timeout_s)
            )
        localnet = LocalNetFacts(echoes=tuple(host_echoes))
    external = None
    if opts.external is not None:
        external = probes.connect_external(*opts.external)
    return _Inside(loopback=loopback, localnet=localnet, external=external)


def gather(
    specs: Sequence[str | None],
    opts: DoctorOptions,
    on_progress: Callable[[str], None] | None = None,
) -> list[DoctorFacts]:
    """Facts of each namespace in ``specs`` (None = this one, NAME, PID or an nsfs path).

    Raises:
        UsageError: unknown namespace.
        NetnsError: a namespace cannot be entered.
    """
    t0 = time.perf_counter_ns()
    run = _collector(opts).read_all(specs)
    return _gather(run, time.perf_counter_ns() - t0, opts, on_progress)


def gather_all(
    opts: DoctorOptions, on_progress: Callable[[str], None] | None = None
) -> tuple[list[DoctorFacts], list[str]]:
    """Facts of every distinct namespace (this one, /run/netns names, those seen through a process).

    Returns:
        The facts, and one line per namespace that could not be entered.
    """
    t0 = time.perf_counter_ns()
    run = _collector(opts).read_all(all_netns=True)
    skipped = [f"{s.target.label}: {s.reason}" for s in run.skipped]
    facts = _gather(run, time.perf_counter_ns() - t0, opts, on_progress, skipped)
    return facts, skipped


def _collector(opts: DoctorOptions) -> Collector:
    return Collector(owner_scope=OwnerScope.ALL if opts.attribute else OwnerScope.NONE)


def _gather(
    run: Collection,
    snap_ns: int,
    opts: DoctorOptions,
    on_progress: Callable[[str], None] | None,
    skipped: list[str] | None = None,
) -> list[DoctorFacts]:
    """The rest of the facts of each namespace the collector read (one fd scan for all of them).

    Args:
        skipped: with every namespace (``--all-netns``): a namespace that vanished since the
            collector read it (containers come and go) is appended here as ``"label: reason"`` and
            the others are still examined; None: a NetnsError is raised.
    """
    out = []
    for reading in run.readings:
        target, snap = reading.target, reading.snapshot
        if on_progress:
            on_progress(target.label)
        t1 = time.perf_counter_ns()
        try:
            inside = run_in_netns(target, partial(_inside, target, snap, opts))
        except NetnsError as exc:
            if skipped is None:
                raise
            skipped.append(f"{target.label}: {exc} (it vanished during the run)")
            continue
        out.append(
            DoctorFacts(
                netns_label=target.label,
                netns_name=netns_name_of(target),
                snapshot=snap,
                loopback=inside.loopback,
                localnet=inside.localnet,
                external=inside.external,
                gather_ns=time.perf_counter_ns() - t1 + snap_ns // max(1, len(run.readings)),
            )
        )
    return out
