"""Facts the doctor reads (I/O lives in ``loopscope.doctor.gather``), as frozen values (pure, stdlib only).

Each rung's checks are pure functions over these records, so they can be tested on recorded facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loopscope.model import InterfaceAddress, IPAddress, LinkInfo, Snapshot

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
class RouteEntry:
    """One route of a routing table (netlink RTM_NEWROUTE)."""

    family: int
    """4 or 6."""
    table: int
    """Routing table id: 255 local, 254 main, 253 default."""
    type: str
    """Route type as ``ip route`` names it: ``unicast``, ``local``, ``broadcast``, ``unreachable``..."""
    dst: str
    """Destination prefix, ``127.0.0.0/8``; ``default`` for a zero-length prefix."""
    dev: str | None = None
    """Output interface name (RTA_OIF), None if absent."""
    gateway: IPAddress | None = None
    """Next hop (RTA_GATEWAY), None for direct routes."""
    prefsrc: IPAddress | None = None
    """Preferred source address (RTA_PREFSRC)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteLookup:
    """The answer to ``ip route get ADDRESS`` (RTM_GETROUTE without NLM_F_DUMP): the FIB's real choice,
    policy rules included."""

    address: IPAddress
    """The address looked up."""
    type: str | None = None
    """Route type chosen (``local`` for the host's own addresses), None on error."""
    dev: str | None = None
    """Output interface chosen (``lo`` for local routes)."""
    error: str | None = None
    """``Network is unreachable (errno 101)`` when the lookup failed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IcmpResult:
    """ICMP echo to one address."""

    target: IPAddress
    """Address pinged."""
    method: str
    """``raw`` (SOCK_RAW, needs CAP_NET_RAW), ``dgram`` (unprivileged ICMP socket) or ``none``."""
    sent: int = 0
    """Echo requests sent."""
    received: int = 0
    """Matching echo replies received."""
    rtts_us: tuple[float, ...] = ()
    """Round-trip time of each reply, microseconds (user space to user space)."""
    error: str | None = None
    """Why it could not be sent or answered (``sendto: Network is unreachable``), None when fine."""
    skipped_reason: str | None = None
    """Set when no ICMP socket can be opened here (not root and gid outside ping_group_range)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EchoResult:
    """A TCP or UDP echo through a listener the doctor started itself."""

    proto: str
    """``tcp`` or ``udp``."""
    address: IPAddress
    """Address the listener was bound to and the client connected to."""
    port: int | None = None
    """Port the listener got (bound to port 0), None if bind failed."""
    phase: str = "done"
    """Where it stopped: ``bind``, ``connect``, ``send``, ``recv`` or ``done``."""
    connect_us: float | None = None
    """TCP connect() time, microseconds."""
    rtts_us: tuple[float, ...] = ()
    """1-byte request/response round trips, microseconds."""
    error: str | None = None
    """The error that stopped it (``connect: Connection refused``), None when fine."""
    skipped_reason: str | None = None
    """Set when the address cannot be expected to work (IPv6 disabled), so nothing was tried."""


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
class Sysctls:
    """Sysctls the doctor needs beyond :class:`~loopscope.model.StackFacts` (per namespace)."""

    route_localnet: dict[str, bool] = field(default_factory=dict)
    """``net.ipv4.conf.<if>.route_localnet`` for ``all``, ``default`` and every interface."""
    ipv6_module: bool = True
    """False when /proc/sys/net/ipv6 does not exist (kernel booted with ``ipv6.disable=1``)."""
    martian_src: int | None = None
    """Packets dropped with a martian source (``/proc/net/stat/rt_cache`` in_martian_src, all CPUs)."""
    martian_dst: int | None = None
    """Packets dropped with a martian destination (in_martian_dst, all CPUs)."""
    icmp_echo_ignore_v4: bool | None = None
    """net.ipv4.icmp_echo_ignore_all: the kernel answers no IPv4 echo request."""
    icmp_echo_ignore_v6: bool | None = None
    """net.ipv6.icmp.echo_ignore_all: the kernel answers no ICMPv6 echo request."""
    conntrack_count: int | None = None
    """net.netfilter.nf_conntrack_count (this namespace); None when conntrack is not loaded."""
    conntrack_max: int | None = None
    """net.netfilter.nf_conntrack_max; when the table is full, new connections are dropped, loopback too."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FirewallFacts:
    """The namespace's firewall rulesets as their tools print them (parsed by the pure checks)."""

    nft_json: str | None = None
    """``nft -j list ruleset`` output, None when nft is missing or failed."""
    iptables_save: str | None = None
    """``iptables-save`` output, None when missing or failed."""
    ip6tables_save: str | None = None
    """``ip6tables-save`` output, None when missing or failed."""
    errors: tuple[str, ...] = ()
    """Rulesets that could not be read, and why (``nft: not installed``)."""


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
