"""Facts the doctor reads (I/O lives in ``loopscope.doctor.gather``), as frozen values (pure, stdlib only).

Each rung's checks are pure functions over these records, so they can be tested on recorded facts. The
records that backends return (routes, ICMP and echo results, sysctls, firewall dumps) live in
:mod:`loopscope.model` and are re-exported here, so the checks find every fact in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loopscope.model import InterfaceAddress, IPAddress, LinkInfo, Snapshot
from loopscope.model.echo import EchoResult, IcmpResult
from loopscope.model.firewall import FirewallFacts
from loopscope.model.routing import RouteEntry, RouteLookup
from loopscope.model.sysctls import Sysctls

__all__ = [
    "DoctorFacts",
    "EchoResult",
    "ExternalFacts",
    "FirewallFacts",
    "HostsEntry",
    "IcmpResult",
    "LocalNetFacts",
    "LoopbackFacts",
    "ResolutionFacts",
    "RouteEntry",
    "RouteLookup",
    "Sysctls",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostsEntry:
    """One line of a hosts file: an address and its names."""

    address: str
    """Address as written (may be invalid)."""
    names: tuple[str, ...]
    """Canonical name and aliases."""
    lineno: int
    """1-based line number."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolutionFacts:
    """How ``localhost`` resolves in the namespace."""

    name: str = "localhost"
    """Name resolved."""
    hosts_path: str = "/etc/hosts"
    """Hosts file the namespace's processes see (``/etc/netns/NAME/hosts`` under ``ip netns exec``)."""
    hosts_entries: tuple[HostsEntry, ...] = ()
    """Lines of the hosts file that carry ``name``."""
    hosts_error: str | None = None
    """Why the hosts file could not be read."""
    order: tuple[IPAddress, ...] = ()
    """Distinct addresses in getaddrinfo(AF_UNSPEC, SOCK_STREAM) order: what a client tries first."""
    resolver: str = "getaddrinfo"
    """Who answered: ``getaddrinfo`` in-process, or ``getent ahosts (ip netns exec NAME)``."""
    error: str | None = None
    """Resolution error (``Name or service not known``)."""
    duration_us: float | None = None
    """Time the resolution took, microseconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopbackFacts:
    """Everything rung 1 judges."""

    links: tuple[LinkInfo, ...] = ()
    """Interfaces of the namespace."""
    addresses: tuple[InterfaceAddress, ...] = ()
    """Addresses of the namespace."""
    local_routes: tuple[RouteEntry, ...] = ()
    """Routes of the local table (255)."""
    main_routes: tuple[RouteEntry, ...] = ()
    """Routes of the main table (254)."""
    route_error: str | None = None
    """Why the routing tables could not be read."""
    lookups: tuple[RouteLookup, ...] = ()
    """``ip route get`` for 127.0.0.1, 127.0.0.2 and ::1."""
    icmp: tuple[IcmpResult, ...] = ()
    """ICMP echo to 127.0.0.1 and ::1."""
    echoes: tuple[EchoResult, ...] = ()
    """TCP and UDP echo on 127.0.0.1, ::1 and 127.0.0.2."""
    resolution: ResolutionFacts = field(default_factory=ResolutionFacts)
    """``localhost``."""
    sysctls: Sysctls = field(default_factory=Sysctls)
    """route_localnet, IPv6 module, martian counters."""
    firewall: FirewallFacts | None = None
    """Firewall rules; None when not read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalNetFacts:
    """Everything rung 2 judges (links, addresses and main routes are in :class:`LoopbackFacts`)."""

    echoes: tuple[EchoResult, ...] = ()
    """TCP echo through a listener on each host address."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalFacts:
    """Rung 3: ``--external HOST:PORT``."""

    host: str
    """Host as given."""
    port: int
    """Port as given."""
    addresses: tuple[IPAddress, ...] = ()
    """Resolved addresses, getaddrinfo order."""
    resolve_us: float | None = None
    """Resolution time, microseconds (0 for an address literal)."""
    resolve_error: str | None = None
    """Resolution error."""
    connects: tuple[tuple[str, float | None, str | None], ...] = ()
    """``(address, connect_us, error)`` per address tried, in order, stopping at the first success."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorFacts:
    """All facts of one namespace."""

    netns_label: str
    """``host``, a /run/netns name or ``pid N``."""
    netns_name: str | None
    """The /run/netns name when there is one (for remedies like ``ip -n NAME link set lo up``)."""
    snapshot: Snapshot
    """Sockets (listener table), links, addresses and StackFacts sysctls."""
    loopback: LoopbackFacts
    """Rung 1."""
    localnet: LocalNetFacts | None = None
    """Rung 2, None when not run."""
    external: ExternalFacts | None = None
    """Rung 3, None unless asked."""
    gather_ns: int | None = None
    """Wall time the gathering took, nanoseconds."""
