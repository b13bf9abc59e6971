"""In-kernel connection counting for ``loopscope exporter``: a second sockops program that adds 1 to a
BPF hash map per loopback connection, so there is no per-event work in Python.

Unlike the ``watch`` program (:mod:`loopscope.backends.linux.bpf.program`, one ring record per event),
this one aggregates in the kernel. On every

- ``BPF_SOCK_OPS_TCP_CONNECT_CB`` (client ``connect()``, runs in the caller's context, so
  ``bpf_get_current_comm`` names the client) whose destination is loopback (127/8, ::1,
  ::ffff:127/104) or the connection's own source address (an own address is routed through ``lo``,
  the kernel picks it as the source), and every
- ``BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB`` (server side, softirq context: no meaningful current task),
  with a flag telling whether the peer is local by the same rule,

it does ``counts[key] += 1`` on this CPU's slot of a per-CPU hash map (``BPF_MAP_TYPE_PERCPU_HASH``:
CPUs counting the same key never share a cache line; the add is still ``BPF_ATOMIC | BPF_ADD``, since
a preempted connect() may share the slot with another task on the same CPU), inserting the key with
``BPF_NOEXIST`` the first time (this CPU's slot 1, the others 0). When the hash map is full the
insert fails and the program adds 1 to ``stats[STAT_MAP_FULL]`` of a per-CPU array instead: nothing is
silent. The key (:data:`KEY`, 56 bytes) is the client's ``comm`` (active side; zero on the passive
side), op, family, destination address and port, netns cookie and the peer-local flag.

On a counted connect it also writes ``clients[connection] = (comm, connect time)`` in an LRU hash
map (``BPF_MAP_TYPE_LRU_HASH``, :data:`CLIENT_KEY`: family, the client's address and port, the
server's address and port, netns cookie; at ``TCP_CONNECT_CB`` the kernel has already picked the
source address and port; :data:`CLIENT_VALUE`: comm and ``bpf_ktime_get_ns()``, CLOCK_MONOTONIC): a
packet seen later on ``lo`` (``exporter --http``) names its client by looking its 4-tuple up
(:meth:`ConnectionCounter.client_entry`). The whole 4-tuple, not the client endpoint alone: one
local port is in use toward several destinations at once (each destination has its own ephemeral
port sequence). The connect time tells a later connection on the same 4-tuple (the port sequence
comes round in seconds on a busy host) from the one a packet belongs to. The LRU evicts the oldest
entries when full, never fails an insert; a reused 4-tuple overwrites its entry.

Why ``comm`` and not the client tgid: the comm is captured in the kernel at connect time, so a client
that has exited before the scrape still has a name, and 10,000 short-lived clients of one program
make one key, not 10,000 (a tgid key fills the map and needs garbage collection racing the kernel).

User space reads the map at scrape time (:meth:`ConnectionCounter.read`, summing the CPUs' slots):
cumulative counters, never reset, so every read is a running total and a missed scrape loses nothing.

Sources of truth: include/uapi/linux/bpf.h (``struct bpf_sock_ops``, ``BPF_NOEXIST``, helper ids,
``BPF_MAP_GET_NEXT_KEY``), net/core/filter.c ``sock_ops_convert_ctx_access`` (4-byte ctx reads;
``remote_port`` is the be16 port shifted left by 16 on little-endian hosts, ``local_port`` host
order), kernel/bpf/helpers.c (``bpf_get_current_comm`` zero-pads to 16 bytes). Little-endian hosts
only (the address tests compare u32 words as loaded on x86-64/aarch64).
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from loopscope.backends.linux.bpf.program import OP_PASSIVE_ESTABLISHED, OP_TCP_CONNECT
from loopscope.backends.linux.bpf.sockops import (
    _port_from_ctx,
    find_cgroup2_root,
)
from loopscope.backends.linux.bpf.syscall import (
    ADD64_K,
    ATOMIC_DW,
    BPF_MAP_LOOKUP_ELEM,
    BPF_PSEUDO_MAP_FD,
    CALL,
    EXIT,
    FN_GET_NETNS_COOKIE,
    FN_KTIME_GET_NS,
    FN_MAP_LOOKUP_ELEM,
    JA,
    JEQ_K,
    JNE_X,
    LD_IMM64,
    LDX_DW,
    LDX_W,
    MOV64_K,
    MOV64_X,
    ST_DW,
    ST_W,
    STX_DW,
    STX_W,
    BpfSyscall,
    Insn,
    Label,
    assemble,
    bpf_attr,
    bpf_failure,
    create_map,
    link_to_cgroup,
    load_sockops_program,
)
from loopscope.errors import BackendUnavailable, ParseError
from loopscope.model import Family

__all__ = [
    "CLIENT_KEY",
    "CLIENT_VALUE",
    "KEY",
    "STAT_MAP_FULL",
    "ClientEntry",
    "ConnectionCount",
    "ConnectionCounter",
    "build_counter_program",
    "decode_count_key",
    "encode_client_key",
    "possible_cpus",
]

# bpf.h values not needed by the watch program
BPF_MAP_GET_NEXT_KEY = 4
BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_HASH = 5, 6, 9
FN_MAP_UPDATE_ELEM, FN_GET_CURRENT_COMM = 2, 16
BPF_ANY, BPF_NOEXIST = 0, 1  # map update flags: create or replace; create only
AND64_K = 0x57  # BPF_ALU64 | BPF_AND | BPF_K
JEQ_X = 0x1D  # BPF_JMP | BPF_JEQ | BPF_X: if dst == src goto
JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K
JNE32_K = 0x56  # BPF_JMP32 | BPF_JNE | BPF_K: compares the low 32 bits (imm 0xffff0000 fits)

# struct bpf_sock_ops field offsets (all __u32)
SO_OP, SO_FAMILY, SO_REMOTE_IP4, SO_LOCAL_IP4 = 0, 20, 24, 28
SO_REMOTE_IP6, SO_LOCAL_IP6, SO_REMOTE_PORT, SO_LOCAL_PORT = 32, 48, 64, 68

# The hash key (56 bytes, host order unless said):
#  0 comm[16] (active: the client's task comm, NUL padded; passive: zero) | 16 u32 op | 20 u32 family
# 24 addr[16] destination (active: remote; passive: local) address, net order, IPv4 in the first 4
# 40 u64 netns cookie | 48 u32 port raw ctx value (active remote_port; passive local_port)
# 52 u32 peer_local (1: the peer is loopback or the same address; active keys are always 1)
KEY = struct.Struct("=16sII16sQII")
STAT_MAP_FULL = 0  # per-CPU stats[0]: increments lost because the hash map was full
_STATS = 1
_K = -56  # key at r10-56 .. r10-1
_ONE = -64  # u64 1, the initial value
_SKEY = -68  # u32 stats key
# The client key (56 bytes, host order unless said): 0 u32 family | 4 u32 local (client) port |
# 8 addr[16] local (client) address, net order, IPv4 in the first 4 | 24 u32 remote (server) port,
# the raw ctx value (be16 << 16) | 28 u32 zero | 32 addr[16] remote (server) address | 48 u64 netns
# cookie. Value (24 bytes): comm[16] | u64 bpf_ktime_get_ns() at connect (CLOCK_MONOTONIC, ns).
CLIENT_KEY = struct.Struct("=II16sII16sQ")
CLIENT_VALUE = struct.Struct("=16sQ")
_CK = -128  # client key at r10-128 .. r10-73 (8-aligned: the verifier wants aligned stack access)
_CV = -152  # client value at r10-152 .. r10-129


def _locality(family_v6: bool, tag: str) -> list[Insn | Label]:
    """r8 = 1 when the remote address is loopback or equals the local address, else 0."""
    p: list[Insn | Label] = [Insn(MOV64_K, 8, imm=1, comment="r8 = 1 (assume local)")]
    if not family_v6:
        return [
            *p,
            Insn(LDX_W, 2, 6, SO_REMOTE_IP4, comment="r2 = ctx->remote_ip4 (net order)"),
            Insn(LDX_W, 3, 6, SO_LOCAL_IP4, comment="r3 = ctx->local_ip4"),
            Insn(JEQ_X, 2, 3, target=f"{tag}_v4_local", comment="same address: routed through lo"),
            Insn(AND64_K, 2, imm=0xFF, comment="r2 = first address byte (little-endian load)"),
            Insn(JEQ_K, 2, imm=127, target=f"{tag}_v4_local", comment="127.0.0.0/8"),
            Insn(MOV64_K, 8, imm=0, comment="r8 = 0 (a remote peer)"),
            Label(f"{tag}_v4_local"),
        ]
    for i in range(4):
        p += [
            Insn(LDX_W, 2, 6, SO_REMOTE_IP6 + 4 * i, comment=f"r2 = ctx->remote_ip6[{i}]"),
            Insn(LDX_W, 3, 6, SO_LOCAL_IP6 + 4 * i, comment=f"r3 = ctx->local_ip6[{i}]"),
            Insn(
                JNE_X, 2, 3, target=f"{tag}_v6_differ", comment="words differ: not the same address"
            ),
        ]
    p += [
        Insn(JA, target=f"{tag}_v6_local", comment="same address: routed through lo"),
        Label(f"{tag}_v6_differ"),
        Insn(LDX_W, 2, 6, SO_REMOTE_IP6, comment="r2 = remote_ip6[0]"),
        Insn(
            JNE_K,
            2,
            imm=0,
            target=f"{tag}_v6_remote",
            comment="::1 and ::ffff:127/104 start with 0",
        ),
        Insn(LDX_W, 2, 6, SO_REMOTE_IP6 + 4, comment="r2 = remote_ip6[1]"),
        Insn(JNE_K, 2, imm=0, target=f"{tag}_v6_remote", comment="second word 0 too"),
        Insn(LDX_W, 2, 6, SO_REMOTE_IP6 + 8, comment="r2 = remote_ip6[2]"),
        Insn(LDX_W, 3, 6, SO_REMOTE_IP6 + 12, comment="r3 = remote_ip6[3]"),
        Insn(JEQ_K, 2, imm=0, target=f"{tag}_v6_one", comment="third word 0: maybe ::1"),
        Insn(
            JNE32_K,
            2,
            imm=-65536,
            target=f"{tag}_v6_remote",
            comment="not 00 00 ff ff: not v4-mapped",
        ),
        Insn(AND64_K, 3, imm=0xFF, comment="r3 = first byte of the mapped IPv4 address"),
        Insn(JEQ_K, 3, imm=127, target=f"{tag}_v6_local", comment="::ffff:127.0.0.0/104"),
        Insn(JA, target=f"{tag}_v6_remote", comment="another mapped IPv4 address"),
        Label(f"{tag}_v6_one"),
        Insn(JEQ_K, 3, imm=0x01000000, target=f"{tag}_v6_local", comment="::1 (bytes 00 00 00 01)"),
        Label(f"{tag}_v6_remote"),
        Insn(MOV64_K, 8, imm=0, comment="r8 = 0 (a remote peer)"),
        Label(f"{tag}_v6_local"),
    ]
    return p


def _side(op: int, family_v6: bool, tag: str, clients_fd: int | None) -> list[Insn | Label]:
    """Fill the key for one (op, family) and jump to ``count`` (or ``out`` for a non-local connect)."""
    active = op == OP_TCP_CONNECT
    p: list[Insn | Label] = [Label(tag)]
    if active:
        p += [
            Insn(MOV64_X, 1, 10, comment="r1 = fp"),
            Insn(ADD64_K, 1, imm=_K, comment="r1 = &key.comm"),
            Insn(MOV64_K, 2, imm=16, comment="r2 = 16"),
            Insn(CALL, imm=FN_GET_CURRENT_COMM, comment="bpf_get_current_comm(&key.comm, 16)"),
        ]
    else:
        p += [
            Insn(ST_DW, 10, 0, _K + 0, 0, comment="key.comm[0:8] = 0 (softirq: no client task)"),
            Insn(ST_DW, 10, 0, _K + 8, 0, comment="key.comm[8:16] = 0"),
        ]
    p += _locality(family_v6, tag)
    if active:
        p.append(Insn(JEQ_K, 8, imm=0, target="out", comment="destination not local: not counted"))
        if clients_fd is not None:
            p += _remember_client(family_v6, clients_fd)
    p += [
        Insn(STX_W, 10, 8, _K + 52, comment="key.peer_local = r8"),
        Insn(ST_W, 10, 0, _K + 16, op, comment=f"key.op = {op}"),
        Insn(ST_W, 10, 0, _K + 20, 10 if family_v6 else 2, comment="key.family"),
        Insn(
            LDX_W,
            2,
            6,
            SO_REMOTE_PORT if active else SO_LOCAL_PORT,
            comment="r2 = ctx->remote_port (raw)" if active else "r2 = ctx->local_port",
        ),
        Insn(STX_W, 10, 2, _K + 48, comment="key.port = r2"),
    ]
    base = (SO_REMOTE_IP6 if active else SO_LOCAL_IP6) if family_v6 else None
    for i in range(4):
        if family_v6:
            assert base is not None
            p += [
                Insn(LDX_W, 2, 6, base + 4 * i, comment=f"r2 = destination ip6[{i}]"),
                Insn(STX_W, 10, 2, _K + 24 + 4 * i, comment=f"key.addr[{4 * i}:{4 * i + 4}] = r2"),
            ]
        elif i == 0:
            src = SO_REMOTE_IP4 if active else SO_LOCAL_IP4
            p += [
                Insn(LDX_W, 2, 6, src, comment="r2 = destination ip4"),
                Insn(STX_W, 10, 2, _K + 24, comment="key.addr[0:4] = r2"),
            ]
        else:
            p.append(Insn(ST_W, 10, 0, _K + 24 + 4 * i, 0, comment=f"key.addr[{4 * i}:] = 0"))
    p.append(Insn(JA, target="count", comment="count it"))
    return p


def _client_address(family_v6: bool, ip4: int, ip6: int, at: int, what: str) -> list[Insn | Label]:
    """Copy one address of the ctx (``ip4``/``ip6`` field offsets) to the stack at ``at``."""
    p: list[Insn | Label] = []
    for i in range(4):
        if family_v6:
            p += [
                Insn(LDX_W, 2, 6, ip6 + 4 * i, comment=f"r2 = ctx->{what}_ip6[{i}]"),
                Insn(STX_W, 10, 2, at + 4 * i, comment=f"ckey.{what}[{4 * i}:{4 * i + 4}] = r2"),
            ]
        elif i == 0:
            p += [
                Insn(LDX_W, 2, 6, ip4, comment=f"r2 = ctx->{what}_ip4"),
                Insn(STX_W, 10, 2, at, comment=f"ckey.{what}[0:4] = r2"),
            ]
        else:
            p.append(Insn(ST_W, 10, 0, at + 4 * i, 0, comment=f"ckey.{what}[{4 * i}:] = 0"))
    return p


def _remember_client(family_v6: bool, clients_fd: int) -> list[Insn | Label]:
    """``clients[family, client address and port, server address and port, netns cookie] =
    (key.comm, bpf_ktime_get_ns())`` (key.comm already filled)."""
    p: list[Insn | Label] = [
        Insn(ST_W, 10, 0, _CK, 10 if family_v6 else 2, comment="ckey.family"),
        Insn(LDX_W, 2, 6, SO_LOCAL_PORT, comment="r2 = ctx->local_port (host order, bound)"),
        Insn(STX_W, 10, 2, _CK + 4, comment="ckey.local_port = r2"),
        *_client_address(family_v6, SO_LOCAL_IP4, SO_LOCAL_IP6, _CK + 8, "local"),
        Insn(LDX_W, 2, 6, SO_REMOTE_PORT, comment="r2 = ctx->remote_port (raw: be16 << 16)"),
        Insn(STX_W, 10, 2, _CK + 24, comment="ckey.remote_port = r2"),
        Insn(ST_W, 10, 0, _CK + 28, 0, comment="ckey padding = 0"),
        *_client_address(family_v6, SO_REMOTE_IP4, SO_REMOTE_IP6, _CK + 32, "remote"),
    ]
    return [
        *p,
        Insn(MOV64_X, 1, 6, comment="r1 = ctx"),
        Insn(CALL, imm=FN_GET_NETNS_COOKIE, comment="r0 = bpf_get_netns_cookie(ctx)"),
        Insn(STX_DW, 10, 0, _CK + 48, comment="ckey.netns_cookie = r0"),
        Insn(LDX_DW, 2, 10, _K, comment="r2 = key.comm[0:8]"),
        Insn(STX_DW, 10, 2, _CV, comment="cvalue.comm[0:8] = r2"),
        Insn(LDX_DW, 2, 10, _K + 8, comment="r2 = key.comm[8:16]"),
        Insn(STX_DW, 10, 2, _CV + 8, comment="cvalue.comm[8:16] = r2"),
        Insn(CALL, imm=FN_KTIME_GET_NS, comment="r0 = bpf_ktime_get_ns() (CLOCK_MONOTONIC)"),
        Insn(STX_DW, 10, 0, _CV + 16, comment="cvalue.connected_ns = r0"),
        Insn(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, imm=clients_fd, comment="r1 = &clients (LRU hash)"),
        Insn(MOV64_X, 2, 10, comment="r2 = fp"),
        Insn(ADD64_K, 2, imm=_CK, comment="r2 = &ckey"),
        Insn(MOV64_X, 3, 10, comment="r3 = fp"),
        Insn(ADD64_K, 3, imm=_CV, comment="r3 = &cvalue"),
        Insn(MOV64_K, 4, imm=BPF_ANY, comment="r4 = BPF_ANY (a reused 4-tuple: replaced)"),
        Insn(
            CALL, imm=FN_MAP_UPDATE_ELEM, comment="bpf_map_update_elem(&clients, ...) (LRU: room)"
        ),
    ]


def build_counter_program(
    counts_fd: int, stats_fd: int, clients_fd: int | None = None
) -> list[Insn | Label]:
    """The SOCK_OPS counting program: ``counts[key] += 1`` on loopback connects and on every passive
    establishment; ``stats[STAT_MAP_FULL] += 1`` (this CPU's slot) when the key cannot be inserted;
    ``clients[4-tuple] = (comm, connect time)`` on loopback connects when ``clients_fd`` is given (the
    exporter's ``--http``; without it, no such work per connect). Always returns 1 (allow).

    Registers: r6 = ctx across calls, r8 = peer-local flag, r10 = frame pointer.
    """
    p: list[Insn | Label] = [
        Insn(MOV64_X, 6, 1, comment="r6 = ctx (r1-r5 are clobbered by calls)"),
        Insn(LDX_W, 2, 6, SO_OP, comment="r2 = ctx->op"),
        Insn(LDX_W, 3, 6, SO_FAMILY, comment="r3 = ctx->family"),
        Insn(JEQ_K, 2, imm=OP_TCP_CONNECT, target="active", comment="client connect()"),
        Insn(JEQ_K, 2, imm=OP_PASSIVE_ESTABLISHED, target="passive", comment="server side"),
        Insn(JA, target="out", comment="other ops: nothing to do"),
        Label("active"),
        Insn(JEQ_K, 3, imm=2, target="a4", comment="AF_INET"),
        Insn(JEQ_K, 3, imm=10, target="a6", comment="AF_INET6"),
        Insn(JA, target="out", comment="another family"),
        Label("passive"),
        Insn(JEQ_K, 3, imm=2, target="p4", comment="AF_INET"),
        Insn(JEQ_K, 3, imm=10, target="p6", comment="AF_INET6"),
        Insn(JA, target="out", comment="another family"),
    ]
    for op, v6, tag in (
        (OP_TCP_CONNECT, False, "a4"),
        (OP_TCP_CONNECT, True, "a6"),
        (OP_PASSIVE_ESTABLISHED, False, "p4"),
        (OP_PASSIVE_ESTABLISHED, True, "p6"),
    ):
        p += _side(op, v6, tag, clients_fd)
    p += [
        Label("count"),
        Insn(MOV64_X, 1, 6, comment="r1 = ctx"),
        Insn(CALL, imm=FN_GET_NETNS_COOKIE, comment="r0 = bpf_get_netns_cookie(ctx)"),
        Insn(STX_DW, 10, 0, _K + 40, comment="key.netns_cookie = r0"),
        Insn(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, imm=counts_fd, comment="r1 = &counts (2 slots)"),
        Insn(MOV64_X, 2, 10, comment="r2 = fp"),
        Insn(ADD64_K, 2, imm=_K, comment="r2 = &key"),
        Insn(CALL, imm=FN_MAP_LOOKUP_ELEM, comment="r0 = this CPU's &counts[key] or NULL"),
        Insn(JEQ_K, 0, imm=0, target="insert", comment="new key: insert it"),
        Label("add"),
        Insn(MOV64_K, 1, imm=1, comment="r1 = 1"),
        Insn(ATOMIC_DW, 0, 1, 0, 0, comment="lock *r0 += 1 (this CPU's slot: no line bouncing)"),
        Insn(JA, target="out", comment="counted"),
        Label("insert"),
        Insn(ST_DW, 10, 0, _ONE, 1, comment="one = 1 (u64)"),
        Insn(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, imm=counts_fd, comment="r1 = &counts"),
        Insn(MOV64_X, 2, 10, comment="r2 = fp"),
        Insn(ADD64_K, 2, imm=_K, comment="r2 = &key"),
        Insn(MOV64_X, 3, 10, comment="r3 = fp"),
        Insn(ADD64_K, 3, imm=_ONE, comment="r3 = &one"),
        Insn(MOV64_K, 4, imm=BPF_NOEXIST, comment="r4 = BPF_NOEXIST"),
        Insn(CALL, imm=FN_MAP_UPDATE_ELEM, comment="r0 = bpf_map_update_elem(&counts, &key, &one)"),
        Insn(JEQ_K, 0, imm=0, target="out", comment="inserted with value 1: counted"),
        Insn(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, imm=counts_fd, comment="r1 = &counts"),
        Insn(MOV64_X, 2, 10, comment="r2 = fp"),
        Insn(ADD64_K, 2, imm=_K, comment="r2 = &key"),
        Insn(CALL, imm=FN_MAP_LOOKUP_ELEM, comment="another CPU inserted it (EEXIST)?"),
        Insn(JNE_K, 0, imm=0, target="add", comment="yes: add to it"),
        Insn(ST_W, 10, 0, _SKEY, STAT_MAP_FULL, comment="skey = STAT_MAP_FULL (map full, E2BIG)"),
        Insn(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, imm=stats_fd, comment="r1 = &stats (per-CPU array)"),
        Insn(MOV64_X, 2, 10, comment="r2 = fp"),
        Insn(ADD64_K, 2, imm=_SKEY, comment="r2 = &skey"),
        Insn(CALL, imm=FN_MAP_LOOKUP_ELEM, comment="r0 = this CPU's &stats[skey] or NULL"),
        Insn(JEQ_K, 0, imm=0, target="out", comment="NULL: give up"),
        Insn(LDX_DW, 1, 0, 0, comment="r1 = stats[skey] (this CPU's slot: no other writer)"),
        Insn(ADD64_K, 1, imm=1, comment="r1 += 1"),
        Insn(STX_DW, 0, 1, 0, comment="stats[skey] = r1"),
        Label("out"),
        Insn(MOV64_K, 0, imm=1, comment="r0 = 1 (sock_ops: success)"),
        Insn(EXIT, comment="return r0"),
    ]
    return p


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionCount:
    """One counter of the map, decoded."""

    passive: bool
    """True: counted on the server side (PASSIVE_ESTABLISHED); False: a client connect()."""
    client_comm: str | None
    """The client's comm at connect time (untrusted bytes, decoded with replacement); None passive."""
    family: Family
    """inet or inet6."""
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    """Destination (server) address."""
    port: int
    """Destination (server) port."""
    netns_cookie: int
    """The namespace's SO_NETNS_COOKIE."""
    peer_local: bool
    """The peer is loopback or the same address (always True for connects)."""
    count: int
    """Connections since the program was loaded (cumulative)."""


def decode_count_key(key: bytes, count: int) -> ConnectionCount:
    """Decode a :data:`KEY` and its value.

    Example: comm ``b"curl"``, op 3, family 2, addr ``7f000001``, port raw ``0x901F0000`` ->
    ``ConnectionCount(passive=False, client_comm="curl", address=127.0.0.1, port=8080, ...)``.

    Raises:
        ParseError: the key is not :data:`KEY`'s size.
    """
    if len(key) != KEY.size:
        raise ParseError(f"counter key is {len(key)} bytes, want {KEY.size}", path="bpf")
    comm, op, family, addr, netns, port_raw, peer_local = KEY.unpack(key)
    passive = op == OP_PASSIVE_ESTABLISHED
    if family == 2:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(addr[:4])
        fam = Family.INET
    else:
        address, fam = ipaddress.IPv6Address(addr), Family.INET6
    return ConnectionCount(
        passive=passive,
        client_comm=None if passive else comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
        family=fam,
        address=address,
        port=port_raw if passive else _port_from_ctx(port_raw),
        netns_cookie=netns,
        peer_local=bool(peer_local),
        count=count,
    )


def encode_client_key(
    client: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int],
    server: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int],
    netns_cookie: int,
) -> bytes:
    """A :data:`CLIENT_KEY` as the program writes it for a connection from ``client`` (address,
    port) to ``server`` in the namespace; both addresses of one family.

    Example: ``encode_client_key((IPv4Address("127.0.0.1"), 51000), (IPv4Address("127.0.0.1"),
    8080), 7).hex() == "02000000" "38c70000" "7f000001" + "00" * 12 + "00001f90" "00000000"
    "7f000001" + "00" * 12 + "0700000000000000"``.
    """
    family = 2 if client[0].version == 4 else 10
    raw_port = int.from_bytes(server[1].to_bytes(2, "big"), "little") << 16
    return CLIENT_KEY.pack(
        family,
        client[1],
        client[0].packed.ljust(16, b"\0"),
        raw_port,
        0,
        server[0].packed.ljust(16, b"\0"),
        netns_cookie,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientEntry:
    """Who connected on one 4-tuple, as the counter program remembered it at ``connect()``."""

    comm: str
    """The client task's comm (attacker-controlled bytes, decoded with replacement)."""
    connected_ns: int
    """``bpf_ktime_get_ns()`` at ``BPF_SOCK_OPS_TCP_CONNECT_CB``: CLOCK_MONOTONIC, ns (compare
    with ``time.monotonic_ns()``)."""


def possible_cpus(text: str) -> int:
    """CPU count from /sys/devices/system/cpu/possible text (per-CPU values come one per CPU).

    Example: ``"0-3,8\\n"`` -> 5.
    """
    total = 0
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        total += int(hi or lo) - int(lo) + 1
    return total


class ConnectionCounter:
    """Loads the counting program, attaches it to the root cgroup v2 (BPF_LINK_CREATE) and reads the
    counters. Nothing runs until constructed; :meth:`close` (or the context manager) detaches.

    Args:
        cgroup_path: cgroup v2 directory; the cgroup2 root from /proc/mounts by default.
        max_entries: hash map size (distinct keys); beyond it increments are counted as map-full.
        client_entries: LRU map size (connections remembered for :meth:`client_entry`; the
            oldest are evicted: 16,384 lasts ~5 s at 3,000 new connections/s); 0: no map, and the
            program does no per-connect work for it (:meth:`client_entry` then answers None).

    Raises:
        BackendUnavailable: big-endian host, no cgroup2, not root, or the kernel refused (the
            verifier log is in the message).
    """

    def __init__(
        self,
        cgroup_path: str | None = None,
        *,
        max_entries: int = 16384,
        client_entries: int = 0,
    ) -> None:
        self._fds: list[int] = []
        self.link_fd: int | None = None
        if sys.byteorder != "little":
            raise BackendUnavailable("eBPF counter: little-endian hosts only")
        self._bpf = BpfSyscall()
        if cgroup_path is None:
            with open("/proc/mounts", encoding="utf-8") as fh:
                cgroup_path = find_cgroup2_root(fh.read())
            if cgroup_path is None:
                raise BackendUnavailable("eBPF counter: no cgroup2 mount in /proc/mounts")
        self.cgroup_path = cgroup_path
        with open("/sys/devices/system/cpu/possible", encoding="ascii") as fh:
            self._ncpus = possible_cpus(fh.read())
        try:
            self.counts_fd = self._map(
                BPF_MAP_TYPE_PERCPU_HASH, KEY.size, 8, max_entries, b"ls_counts"
            )
            self.stats_fd = self._map(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, _STATS, b"ls_cstats")
            self.clients_fd: int | None = None
            if client_entries > 0:
                self.clients_fd = self._map(
                    BPF_MAP_TYPE_LRU_HASH,
                    CLIENT_KEY.size,
                    CLIENT_VALUE.size,
                    client_entries,
                    b"ls_clients",
                )
            self._load()
            self._attach()
        except BaseException:
            self.close()
            raise
        self.max_entries = max_entries

    def _map(self, map_type: int, key_size: int, value_size: int, entries: int, name: bytes) -> int:
        fd = create_map(self._bpf, map_type, key_size, value_size, entries, name)
        self._fds.append(fd)
        return fd

    def _load(self) -> None:
        code = assemble(build_counter_program(self.counts_fd, self.stats_fd, self.clients_fd))
        log = ctypes.create_string_buffer(1 << 16)
        for log_level in (0, 1):
            fd = load_sockops_program(self._bpf, code, b"ls_counter", log if log_level else None)
            if fd >= 0:
                break
            if log_level == 1 or fd == -1:  # EPERM: the log would not help
                text = log.value.decode(errors="replace").strip().splitlines()[-3:]
                raise bpf_failure(
                    "BPF_PROG_LOAD(counter)",
                    -fd,
                    f" (verifier: {' | '.join(text)})" if text else "",
                )
        self.prog_fd = fd
        self._fds.append(fd)
        try:
            self.cgroup_fd = os.open(self.cgroup_path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise BackendUnavailable(
                f"eBPF counter: cannot open cgroup {self.cgroup_path}: {exc}"
            ) from exc
        self._fds.append(self.cgroup_fd)

    def _attach(self) -> None:
        self.link_fd = link_to_cgroup(self._bpf, self.prog_fd, self.cgroup_fd, "counter")

    @property
    def attached(self) -> bool:
        """Whether the program is linked to the cgroup."""
        return self.link_fd is not None

    def _keys(self) -> Iterator[bytes]:
        key = ctypes.create_string_buffer(KEY.size)
        nxt = ctypes.create_string_buffer(KEY.size)
        attr = bpf_attr(
            (0, "=I", self.counts_fd),
            (8, "=Q", 0),  # NULL key: the first one
            (16, "=Q", ctypes.addressof(nxt)),
        )
        while self._bpf.call(BPF_MAP_GET_NEXT_KEY, attr) == 0:
            yield nxt.raw
            ctypes.memmove(key, nxt, KEY.size)
            struct.pack_into("=Q", attr, 8, ctypes.addressof(key))

    def read(self) -> list[ConnectionCount]:
        """Every counter, summed over the CPUs (one BPF_MAP_GET_NEXT_KEY and one lookup per key; keys
        are few: distinct client names x destinations). A key deleted mid-walk restarts nothing:
        counters are never deleted by us.

        Raises:
            BackendUnavailable: the counter is closed.
        """
        if not self._fds:
            raise BackendUnavailable("eBPF counter is closed")
        out: list[ConnectionCount] = []
        value = ctypes.create_string_buffer(8 * self._ncpus)  # one u64 per possible CPU
        per_cpu = struct.Struct(f"={self._ncpus}Q")
        kbuf = ctypes.create_string_buffer(KEY.size)
        attr = bpf_attr(
            (0, "=I", self.counts_fd),
            (8, "=Q", ctypes.addressof(kbuf)),
            (16, "=Q", ctypes.addressof(value)),
        )
        for key in list(self._keys()):
            ctypes.memmove(kbuf, key, KEY.size)
            if self._bpf.call(BPF_MAP_LOOKUP_ELEM, attr) == 0:
                out.append(decode_count_key(key, sum(per_cpu.unpack(value.raw))))
        return out

    def client_entry(
        self,
        client: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int],
        server: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int],
        netns_cookie: int,
    ) -> ClientEntry | None:
        """Who made the last loopback ``connect()`` from ``client`` (address, port) to ``server`` in
        the namespace, and when; None when not remembered (connected before the program was attached,
        evicted, or not a loopback destination). The entry may belong to a later connection on the
        same 4-tuple: compare :attr:`ClientEntry.connected_ns` with the time of what is being named.
        IPv4 ends are also looked up as IPv4-mapped (an AF_INET6 socket talking IPv4). One map
        lookup each.

        Example: after ``socket.create_connection(("127.0.0.1", 8080))`` from ``curl`` bound to
        127.0.0.1:51000, ``client_entry((IPv4Address("127.0.0.1"), 51000), (IPv4Address("127.0.0.1"),
        8080), cookie).comm == "curl"``.
        """
        if not self._fds or self.clients_fd is None:
            return None
        keys = [encode_client_key(client, server, netns_cookie)]
        if client[0].version == 4 and server[0].version == 4:
            mapped = [
                (ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + a.packed), p)
                for a, p in (client, server)
            ]
            keys.append(encode_client_key(mapped[0], mapped[1], netns_cookie))
        value = ctypes.create_string_buffer(CLIENT_VALUE.size)
        for key in keys:
            kbuf = ctypes.create_string_buffer(key, len(key))
            attr = bpf_attr(
                (0, "=I", self.clients_fd),
                (8, "=Q", ctypes.addressof(kbuf)),
                (16, "=Q", ctypes.addressof(value)),
            )
            if self._bpf.call(BPF_MAP_LOOKUP_ELEM, attr) == 0:
                comm, connected_ns = CLIENT_VALUE.unpack(value.raw)
                return ClientEntry(
                    comm=comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
                    connected_ns=connected_ns,
                )
        return None

    def map_full(self) -> int:
        """Increments lost because the hash map was full (sum over CPUs)."""
        if not self._fds:
            return 0
        values = ctypes.create_string_buffer(8 * self._ncpus)
        key = ctypes.create_string_buffer(struct.pack("=I", STAT_MAP_FULL), 4)
        attr = bpf_attr(
            (0, "=I", self.stats_fd),
            (8, "=Q", ctypes.addressof(key)),
            (16, "=Q", ctypes.addressof(values)),
        )
        if self._bpf.call(BPF_MAP_LOOKUP_ELEM, attr) < 0:
            return 0
        return sum(struct.unpack(f"={self._ncpus}Q", values.raw))

    def attach(self) -> None:
        """Link the loaded program to the cgroup again after :meth:`detach` (the counts and the maps
        are kept). Idempotent.

        Raises:
            BackendUnavailable: the kernel refused the link.
        """
        if self.link_fd is None:
            self._attach()

    def detach(self) -> None:
        """Unlink (close the link fd): the kernel stops running the program. Idempotent."""
        if self.link_fd is not None:
            os.close(self.link_fd)
            self.link_fd = None

    def close(self) -> None:
        """Detach and free the program and maps. Idempotent."""
        self.detach()
        while self._fds:
            os.close(self._fds.pop())

    def __enter__(self) -> ConnectionCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
