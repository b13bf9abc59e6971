"""Doctor facts recorded on the development VM (Linux 6.18): a healthy host and a fresh netns with lo DOWN.

Two kinds: ``fixtures/doctor_*.json`` written by ``record_doctor_facts.py`` (loaded by :func:`load_facts`),
and the ``healthy``/``lo_down`` values below, transcribed from real runs and easy to vary with ``replace``.

Values are those ``loopscope doctor --json`` read on 2026-11-22 (host: lo UP mtu 65536, 127.0.0.1/8,
::1/128, eth0 192.0.2.2/24 + fd00::2/64, default via 192.0.2.1; fresh netns ``ip netns add``: lo DOWN,
no address, every ``ip route get`` -> ENETUNREACH, echo connect -> ENETUNREACH, ::1 bind -> EADDRNOTAVAIL).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import types
import typing
from pathlib import Path

import pytest

from loopscope.analysis.doctor.facts import (
    DoctorFacts,
    EchoResult,
    FirewallFacts,
    HostsEntry,
    IcmpResult,
    LocalNetFacts,
    LoopbackFacts,
    ResolutionFacts,
    RouteEntry,
    RouteLookup,
    Sysctls,
)
from loopscope.model import (
    Endpoint,
    Family,
    InterfaceAddress,
    LinkInfo,
    NetnsId,
    Proto,
    Snapshot,
    SocketRecord,
    StackFacts,
    TcpState,
)

A = ipaddress.ip_address
NS = NetnsId(4, 4026531840)
V4, V4B, V6 = A("127.0.0.1"), A("127.0.0.2"), A("::1")
STACK = StackFacts(
    ip_local_port_range=(32768, 60999),
    somaxconn=4096,
    bindv6only=False,
    ipv6_disabled_all=False,
    ipv6_disabled_lo=False,
    tcp_tw_reuse=2,
    tcp_fin_timeout_s=60,
    route_localnet_all=False,
    ping_group_range=(1, 0),
)


def listener(
    addr: str, port: int, *, v6only: bool | None = None, proto: Proto = Proto.TCP
) -> SocketRecord:
    ip = A(addr)
    return SocketRecord(
        proto=proto,
        family=Family.INET if ip.version == 4 else Family.INET6,
        state=TcpState.LISTEN if proto is Proto.TCP else TcpState.UNCONN,
        local=Endpoint(ip, port),
        remote=Endpoint(A("0.0.0.0") if ip.version == 4 else A("::"), 0),
        netns=NS,
        inode=1000 + port,
        accept_queue=0,
        backlog=128,
        v6only=v6only,
    )


def conn(
    local: str, lport: int, remote: str, rport: int, state: TcpState = TcpState.ESTABLISHED
) -> SocketRecord:
    return SocketRecord(
        proto=Proto.TCP,
        family=Family.INET,
        state=state,
        local=Endpoint(A(local), lport),
        remote=Endpoint(A(remote), rport),
        netns=NS,
    )


def ok_echo(proto: str, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> EchoResult:
    return EchoResult(
        proto=proto,
        address=addr,
        port=40000,
        connect_us=61.0 if proto == "tcp" else None,
        rtts_us=(25.1, 22.0, 23.9, 43.3, 24.6),
    )


def _healthy() -> DoctorFacts:
    links = (
        LinkInfo(name="lo", index=1, up=True, running=True, loopback=True, mtu=65536),
        LinkInfo(name="eth0", index=2, up=True, running=True, loopback=False, mtu=1500),
    )
    addrs = (
        InterfaceAddress(interface="lo", index=1, address=V4, prefixlen=8),
        InterfaceAddress(interface="lo", index=1, address=V6, prefixlen=128),
        InterfaceAddress(interface="eth0", index=2, address=A("192.0.2.2"), prefixlen=24),
        InterfaceAddress(interface="eth0", index=2, address=A("fd00::2"), prefixlen=64),
    )
    local = (
        RouteEntry(family=4, table=255, type="local", dst="127.0.0.0/8", dev="lo", prefsrc=V4),
        RouteEntry(family=4, table=255, type="local", dst="127.0.0.1/32", dev="lo", prefsrc=V4),
        RouteEntry(family=6, table=255, type="local", dst="::1/128", dev="lo"),
    )
    main = (
        RouteEntry(
            family=4, table=254, type="unicast", dst="default", dev="eth0", gateway=A("192.0.2.1")
        ),
        RouteEntry(
            family=4,
            table=254,
            type="unicast",
            dst="192.0.2.0/24",
            dev="eth0",
            prefsrc=A("192.0.2.2"),
        ),
    )
    lookups = tuple(RouteLookup(address=a, type="local", dev="lo") for a in (V4, V4B, V6))
    icmp = tuple(
        IcmpResult(target=a, method="raw", sent=3, received=3, rtts_us=(50.7, 113.9, 40.2))
        for a in (V4, V6)
    )
    echoes = tuple(ok_echo(p, a) for a in (V4, V6, V4B) for p in ("tcp", "udp"))
    res = ResolutionFacts(
        hosts_entries=(HostsEntry(address="127.0.0.1", names=("localhost",), lineno=1),),
        order=(V4,),
        duration_us=2400.0,
    )
    lf = LoopbackFacts(
        links=links,
        addresses=addrs,
        local_routes=local,
        main_routes=main,
        lookups=lookups,
        icmp=icmp,
        echoes=echoes,
        resolution=res,
        sysctls=Sysctls(
            route_localnet={"all": False, "default": False, "lo": False, "eth0": False},
            martian_src=0,
            martian_dst=0,
            conntrack_count=0,
            conntrack_max=262144,
        ),
        firewall=FirewallFacts(
            nft_json='{"nftables": [{"metainfo": {"json_schema_version": 1}}]}',
            iptables_save="",
            ip6tables_save="",
        ),
    )
    snap = Snapshot(
        taken_at_ns=0,
        netns=NS,
        netns_label="host",
        source="sock_diag",
        sockets=(
            listener("127.0.0.1", 5432),
            listener("0.0.0.0", 22),
            listener("::", 22, v6only=True),
            conn("127.0.0.1", 40001, "127.0.0.1", 5432),
            conn("127.0.0.1", 5432, "127.0.0.1", 40001),
        ),
        links=links,
        addresses=addrs,
        stack=STACK,
    )
    localnet = LocalNetFacts(echoes=(ok_echo("tcp", A("192.0.2.2")), ok_echo("tcp", A("fd00::2"))))
    return DoctorFacts(
        netns_label="host", netns_name=None, snapshot=snap, loopback=lf, localnet=localnet
    )


def _lo_down() -> DoctorFacts:
    links = (LinkInfo(name="lo", index=1, up=False, running=False, loopback=True, mtu=65536),)
    err = "Network is unreachable (errno 101)"
    lf = LoopbackFacts(
        links=links,
        lookups=tuple(RouteLookup(address=a, error=err) for a in (V4, V4B, V6)),
        icmp=(
            IcmpResult(target=V4, method="raw", error="sendto: Network is unreachable"),
            IcmpResult(target=V6, method="raw", error="sendto: Cannot assign requested address"),
        ),
        echoes=tuple(
            EchoResult(
                proto=p,
                address=a,
                phase="bind",
                error="bind: Cannot assign requested address (EADDRNOTAVAIL)",
            )
            if a.version == 6
            else EchoResult(
                proto=p,
                address=a,
                port=46779,
                phase="connect",
                error="connect: Network is unreachable (ENETUNREACH)",
            )
            for a in (V4, V6, V4B)
            for p in ("tcp", "udp")
        ),
        resolution=ResolutionFacts(
            hosts_entries=(HostsEntry(address="127.0.0.1", names=("localhost",), lineno=1),),
            order=(V4,),
        ),
        sysctls=Sysctls(route_localnet={"all": False, "default": False, "lo": False}),
    )
    snap = Snapshot(
        taken_at_ns=0,
        netns=NetnsId(4, 4026532177),
        netns_label="blue",
        source="sock_diag",
        links=links,
        stack=STACK,
    )
    return DoctorFacts(
        netns_label="blue", netns_name="blue", snapshot=snap, loopback=lf, localnet=LocalNetFacts()
    )


@pytest.fixture
def healthy() -> DoctorFacts:
    return _healthy()


@pytest.fixture
def lo_down() -> DoctorFacts:
    return _lo_down()


@pytest.fixture
def mk_listener():  # type: ignore[no-untyped-def]
    """The :func:`listener` builder (conftest modules cannot be imported under --import-mode=importlib)."""
    return listener


@pytest.fixture
def mk_conn():  # type: ignore[no-untyped-def]
    """The :func:`conn` builder."""
    return conn


def _decode(tp: typing.Any, value: typing.Any) -> typing.Any:
    """Inverse of loopscope.render.jsonable.to_jsonable for the types DoctorFacts uses."""
    origin = typing.get_origin(tp)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if set(args) == {ipaddress.IPv4Address, ipaddress.IPv6Address}:
            return ipaddress.ip_address(value)
        return _decode(args[0], value)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        return tuple(_decode(a, v) for a, v in zip(args, value, strict=False))
    if origin in (dict, typing.get_origin(typing.Mapping[str, int])):
        key_t, val_t = typing.get_args(tp)
        return {_decode(key_t, k): _decode(val_t, v) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields"):
        hints = typing.get_type_hints(tp)
        return tp(**{f: _decode(hints[f], value[f]) for f in tp._fields})
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(
            **{
                f.name: _decode(hints[f.name], value[f.name])
                for f in dataclasses.fields(tp)
                if f.name in value
            }
        )
    if tp in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        return ipaddress.ip_address(value)
    return value


def load_facts(name: str) -> DoctorFacts:
    """A recorded ``fixtures/doctor_*.json`` as DoctorFacts."""
    data = json.loads((Path(__file__).parent / "fixtures" / name).read_text())
    facts = _decode(DoctorFacts, data)
    assert isinstance(facts, DoctorFacts)
    return facts


@pytest.fixture
def recorded_lo_down() -> DoctorFacts:
    """A fresh `ip netns add` namespace as the doctor read it (lo DOWN)."""
    return load_facts("doctor_lo_down.json")


@pytest.fixture
def recorded_ok() -> DoctorFacts:
    """The same namespace with lo up, a veth pair, a default route and a listener on 127.0.0.1:8080."""
    return load_facts("doctor_netns_ok.json")
