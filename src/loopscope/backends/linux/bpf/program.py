"""The sockops program of ``loopscope watch``, hand-assembled and documented instruction by instruction.

On the chosen sockops callbacks it writes one 104-byte :data:`EVENT` record (time, pid/tgid, socket
cookie, family, ports, addresses, namespace cookie, and on connect the caller's ``comm``) into a ring
buffer (or a queue on old kernels). The comm names a client at connect time, so a process that exits
before ``/proc/PID`` is read keeps its name. ``bpf_get_current_comm`` is allowed for
BPF_PROG_TYPE_SOCK_OPS wherever ``bpf_get_current_pid_tgid`` is: kernel/bpf/cgroup.c
``cgroup_current_func_proto`` offers both to cgroup hooks with a process context, and newer kernels moved
both to ``bpf_base_func_proto`` (kernel 6.18 here loads it, as it does the exporter's counter program).
On the TCP_CONNECT callback the current task is the thread calling ``connect()``, so the name is that
thread's comm (a thread renamed by ``prctl(PR_SET_NAME)`` gives its own name). A kernel that refuses
it gets the program without it (:class:`loopscope.backends.linux.bpf.sockops.SockopsCollector` retries)
and names then come from ``/proc`` only.
Loaded and attached by :class:`loopscope.backends.linux.bpf.sockops.SockopsCollector`.

Sources of truth: include/uapi/linux/bpf.h (``struct bpf_sock_ops`` offsets, helper ids),
net/core/filter.c ``sock_ops_convert_ctx_access`` (ctx reads are 4 bytes wide).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from loopscope.backends.linux.bpf.syscall import (
    ADD64_K,
    ATOMIC_DW,
    BPF_PSEUDO_MAP_FD,
    BPF_RB_NO_WAKEUP,
    CALL,
    EXIT,
    FN_GET_CURRENT_PID_TGID,
    FN_GET_NETNS_COOKIE,
    FN_GET_SOCKET_COOKIE,
    FN_KTIME_GET_NS,
    FN_MAP_LOOKUP_ELEM,
    FN_MAP_PUSH_ELEM,
    FN_RINGBUF_OUTPUT,
    JA,
    JEQ_K,
    JNE_K,
    JNE_X,
    LD_IMM64,
    LDX_W,
    MOV64_K,
    MOV64_X,
    ST_DW,
    ST_W,
    STX_DW,
    STX_W,
    Insn,
    Label,
)

__all__ = [
    "EVENT",
    "FN_GET_CURRENT_COMM",
    "OP_PASSIVE_ESTABLISHED",
    "OP_TCP_CONNECT",
    "build_sockops_program",
]

FN_GET_CURRENT_COMM = 16  # bpf_get_current_comm(buf, size): zero-padded task comm

OP_TCP_CONNECT = 3  # BPF_SOCK_OPS_TCP_CONNECT_CB: in connect(), local port chosen, caller's context
OP_PASSIVE_ESTABLISHED = 5  # BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB: server side, softirq context

# struct bpf_sock_ops field offsets (all __u32; ctx reads must be 4 bytes wide)
SO_OP, SO_FAMILY, SO_REMOTE_IP4, SO_LOCAL_IP4 = 0, 20, 24, 28
SO_REMOTE_IP6, SO_LOCAL_IP6, SO_REMOTE_PORT, SO_LOCAL_PORT = 32, 48, 64, 68

# The record the program pushes (104 bytes, host order unless said):
#  0 u64 ktime_ns | 8 u64 pid_tgid | 16 u64 cookie | 24 u32 op | 28 u32 family
# 32 u32 local_port (host order) | 36 u32 remote_port (raw ctx value) | 40 local_ip4 (net order)
# 44 remote_ip4 (net order) | 48 local_ip6[16] | 64 remote_ip6[16] | 80 u64 netns cookie (0 when the
# kernel lacks bpf_get_netns_cookie for sock_ops, before 5.15) | 88 comm[16] (TCP_CONNECT: the caller's
# comm, NUL padded; other ops, or built without ``comm``: zero)
EVENT = struct.Struct("=QQQIIII4s4s16s16sQ16s")
_STACK_EVENT = -104  # event lives at r10-104 .. r10-1
_STACK_KEY = -112  # u32 key 0 for the drop counter lookup


def build_sockops_program(
    queue_fd: int,
    drops_fd: int,
    ops: Iterable[int],
    *,
    netns_cookie: bool = True,
    only_netns: int | None = None,
    ringbuf: bool = False,
    comm: bool = True,
) -> list[Insn | Label]:
    """The SOCK_OPS program: on the chosen ``ops``, write an :data:`EVENT` into the map ``queue_fd``
    (``bpf_ringbuf_output(.., BPF_RB_NO_WAKEUP)`` into a ring buffer with ``ringbuf``, else
    ``bpf_map_push_elem`` into a queue); count failed writes (buffer full) in ``drops_fd[0]``.
    Always returns 1 (allow; no reply).

    With ``netns_cookie`` the record carries ``bpf_get_netns_cookie(ctx)`` (kernel >= 5.15), which
    matches ``getsockopt(SO_NETNS_COOKIE)`` of any socket in that namespace; otherwise 0. With
    ``only_netns`` too, sockets of other namespaces are skipped in the kernel (nothing queued). With
    ``comm`` the TCP_CONNECT record carries ``bpf_get_current_comm`` (the client's name); otherwise, and
    for the other ops (softirq: no client task), zero.

    Registers: r1 = ctx on entry, r6 = ctx kept across calls, r10 = frame pointer, r0 = return.
    """
    ev = _STACK_EVENT
    p: list[Insn | Label] = [
        Insn(MOV64_X, 6, 1, comment="r6 = ctx (r1 is clobbered by calls)"),
        Insn(LDX_W, 2, 6, SO_OP, comment="r2 = ctx->op"),
    ]
    for op in ops:
        p.append(Insn(JEQ_K, 2, 0, imm=op, target="push", comment=f"if op == {op} goto push"))
    p += [
        Insn(JA, target="out", comment="other ops: nothing to do"),
        Label("push"),
    ]
    if netns_cookie:
        p += [
            Insn(MOV64_X, 1, 6, comment="r1 = ctx"),
            Insn(CALL, imm=FN_GET_NETNS_COOKIE, comment="r0 = bpf_get_netns_cookie(ctx)"),
            Insn(STX_DW, 10, 0, ev + 80, comment="ev.netns_cookie = r0"),
        ]
        if only_netns is not None:
            p += [
                Insn(
                    LD_IMM64,
                    1,
                    0,
                    imm=only_netns,
                    comment="r1 = the watched namespace's cookie (2 slots)",
                ),
                Insn(JNE_X, 0, 1, target="out", comment="another namespace: skip (no queue push)"),
            ]
    else:
        p.append(
            Insn(
                ST_DW, 10, 0, ev + 80, 0, comment="ev.netns_cookie = 0 (BPF_ST | BPF_MEM | BPF_DW)"
            )
        )
    p += [
        Insn(CALL, imm=FN_KTIME_GET_NS, comment="r0 = bpf_ktime_get_ns()"),
        Insn(STX_DW, 10, 0, ev + 0, comment="ev.ktime_ns = r0"),
        Insn(CALL, imm=FN_GET_CURRENT_PID_TGID, comment="r0 = tgid << 32 | tid"),
        Insn(STX_DW, 10, 0, ev + 8, comment="ev.pid_tgid = r0"),
        Insn(MOV64_X, 1, 6, comment="r1 = ctx"),
        Insn(CALL, imm=FN_GET_SOCKET_COOKIE, comment="r0 = bpf_get_socket_cookie(ctx)"),
        Insn(STX_DW, 10, 0, ev + 16, comment="ev.cookie = r0"),
        Insn(ST_DW, 10, 0, ev + 88, 0, comment="ev.comm[0:8] = 0"),
        Insn(ST_DW, 10, 0, ev + 96, 0, comment="ev.comm[8:16] = 0"),
    ]
    if comm:
        p += [
            Insn(LDX_W, 2, 6, SO_OP, comment="r2 = ctx->op"),
            Insn(JNE_K, 2, imm=OP_TCP_CONNECT, target="no_comm", comment="not connect(): no task"),
            Insn(MOV64_X, 1, 10, comment="r1 = fp"),
            Insn(ADD64_K, 1, imm=ev + 88, comment="r1 = &ev.comm"),
            Insn(MOV64_K, 2, imm=16, comment="r2 = 16"),
            Insn(CALL, imm=FN_GET_CURRENT_COMM, comment="bpf_get_current_comm(&ev.comm, 16)"),
            Label("no_comm"),
        ]
    copies = (
        [
            (SO_OP, 24, "op"),
            (SO_FAMILY, 28, "family"),
            (SO_LOCAL_PORT, 32, "local_port"),
            (SO_REMOTE_PORT, 36, "remote_port"),
            (SO_LOCAL_IP4, 40, "local_ip4"),
            (SO_REMOTE_IP4, 44, "remote_ip4"),
        ]
        + [(SO_LOCAL_IP6 + 4 * i, 48 + 4 * i, f"local_ip6[{i}]") for i in range(4)]
        + [(SO_REMOTE_IP6 + 4 * i, 64 + 4 * i, f"remote_ip6[{i}]") for i in range(4)]
    )
    for ctx_off, ev_off, name in copies:
        p.append(Insn(LDX_W, 2, 6, ctx_off, comment=f"r2 = ctx->{name}"))
        p.append(Insn(STX_W, 10, 2, ev + ev_off, comment=f"ev.{name} = r2"))
    p += [
        Insn(
            LD_IMM64,
            1,
            BPF_PSEUDO_MAP_FD,
            imm=queue_fd,
            comment=f"r1 = &{'ring' if ringbuf else 'queue'} (map fd, 2 slots)",
        ),
        Insn(MOV64_X, 2, 10, comment="r2 = fp"),
        Insn(ADD64_K, 2, imm=ev, comment="r2 = &ev"),
    ]
    if ringbuf:
        p += [
            Insn(MOV64_K, 3, imm=EVENT.size, comment=f"r3 = {EVENT.size} (record size)"),
            Insn(
                MOV64_K, 4, imm=BPF_RB_NO_WAKEUP, comment="r4 = BPF_RB_NO_WAKEUP (no poller wakeup)"
            ),
            Insn(
                CALL,
                imm=FN_RINGBUF_OUTPUT,
                comment="r0 = bpf_ringbuf_output(&ring, &ev, size, flags)",
            ),
        ]
    else:
        p += [
            Insn(MOV64_K, 3, imm=0, comment="r3 = 0 (flags: fail when full, never overwrite)"),
            Insn(CALL, imm=FN_MAP_PUSH_ELEM, comment="r0 = bpf_map_push_elem(&queue, &ev, 0)"),
        ]
    p += [
        Insn(JEQ_K, 0, imm=0, target="out", comment="written: done"),
        Insn(ST_W, 10, 0, _STACK_KEY, 0, comment="key = 0"),
        Insn(LD_IMM64, 1, BPF_PSEUDO_MAP_FD, imm=drops_fd, comment="r1 = &drops (array[1] of u64)"),
        Insn(MOV64_X, 2, 10, comment="r2 = fp"),
        Insn(ADD64_K, 2, imm=_STACK_KEY, comment="r2 = &key"),
        Insn(CALL, imm=FN_MAP_LOOKUP_ELEM, comment="r0 = &drops[0] or NULL"),
        Insn(JEQ_K, 0, imm=0, target="out", comment="NULL: give up"),
        Insn(MOV64_K, 1, imm=1, comment="r1 = 1"),
        Insn(ATOMIC_DW, 0, 1, 0, 0, comment="lock drops[0] += 1"),
        Label("out"),
        Insn(MOV64_K, 0, imm=1, comment="r0 = 1 (sock_ops: success)"),
        Insn(EXIT, comment="return r0"),
    ]
    return p
