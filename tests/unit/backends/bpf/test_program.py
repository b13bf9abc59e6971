"""Golden values for the hand-assembled sockops program, its encoder and the record decoder."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from loopscope.backends.linux.bpf import sockops as ebpf
from loopscope.backends.linux.bpf.program import FN_GET_CURRENT_COMM
from loopscope.backends.linux.bpf.sockops import (
    EVENT,
    build_sockops_program,
    find_cgroup2_root,
    parse_event,
)
from loopscope.backends.linux.bpf.syscall import (
    CALL,
    EXIT,
    JA,
    JEQ_K,
    JNE_K,
    LD_IMM64,
    LDX_W,
    MOV64_K,
    MOV64_X,
    STX_DW,
    Insn,
    Label,
    assemble,
)
from loopscope.errors import ParseError
from loopscope.model import Endpoint, Family
from loopscope.model.events import ConnectKind


@pytest.mark.parametrize(
    ("insn", "hexbytes"),
    [
        (Insn(MOV64_X, 6, 1), "bf16000000000000"),  # r6 = r1
        (Insn(LDX_W, 2, 6, 0), "6162000000000000"),  # r2 = *(u32 *)(r6 + 0)
        (Insn(LDX_W, 2, 6, 68), "6162440000000000"),  # r2 = ctx->local_port
        (Insn(STX_DW, 10, 0, -80), "7b0ab0ff00000000"),  # *(u64 *)(r10 - 80) = r0
        (Insn(MOV64_K, 0, imm=1), "b700000001000000"),  # r0 = 1
        (Insn(0x85, imm=14), "8500000000000e00"[:8] + "0e000000"),  # call bpf_get_current_pid_tgid
        (Insn(EXIT), "9500000000000000"),
        (Insn(MOV64_K, 3, imm=-1), "b7030000ffffffff"),  # negative immediates are two's complement
    ],
)
def test_single_instruction_encoding(insn: Insn, hexbytes: str) -> None:
    assert insn.encode().hex() == hexbytes


def test_ld_imm64_takes_two_slots_and_carries_the_map_fd() -> None:
    code = assemble([Insn(LD_IMM64, 1, 1, imm=7)])
    assert code.hex() == "1811000007000000" + "0000000000000000"
    wide = assemble([Insn(LD_IMM64, 2, 0, imm=0x1_0000_0002)])
    assert wide.hex() == "1802000002000000" + "0000000001000000"


def test_jump_offsets_count_slots_after_the_jump_including_wide_loads() -> None:
    prog = [
        Insn(JEQ_K, 2, imm=3, target="end"),  # slot 0 -> target slot 4: off = 4 - 1 = 3
        Insn(LD_IMM64, 1, 1, imm=5),  # slots 1-2
        Insn(JA, target="end"),  # slot 3 -> off 0
        Label("end"),
        Insn(EXIT),  # slot 4
    ]
    code = assemble(prog)
    assert len(code) == 5 * 8
    assert struct.unpack_from("<h", code, 2)[0] == 3
    assert struct.unpack_from("<h", code, 3 * 8 + 2)[0] == 0
    assert code[0] == 0x15 and code[1] == 0x02 and struct.unpack_from("<i", code, 4)[0] == 3


def test_unknown_label_is_an_error() -> None:
    with pytest.raises(ValueError):
        assemble([Insn(JA, target="nowhere")])


def test_program_shape_and_documentation() -> None:
    prog = build_sockops_program(queue_fd=11, drops_fd=12, ops=(3, 5))
    insns = [i for i in prog if isinstance(i, Insn)]
    assert all(i.comment for i in insns), "every instruction is documented"
    code = assemble(prog)
    assert (
        len(code) % 8 == 0 and len(code) // 8 == 69
    )  # 2 + 2 op tests + ja + 7 + 3 netns + 2 comm zero + 6 comm + 14 copies x 2 + 7 push + 9 drop + 2
    # both map fds appear as BPF_PSEUDO_MAP_FD wide loads
    wide = [
        (code[k + 1] >> 4, struct.unpack_from("<i", code, k + 4)[0])
        for k in range(0, len(code), 8)
        if code[k] == LD_IMM64
    ]
    assert wide == [(1, 11), (1, 12)]
    # the last two are r0 = 1; exit
    assert code[-16:].hex() == "b700000001000000" + "9500000000000000"
    # the op filter: two JEQ on r2 with immediates 3 and 5
    jeq = [struct.unpack_from("<i", code, k + 4)[0] for k in range(16, 32, 8)]
    assert jeq == [3, 5]


def _record(
    op: int,
    family: int,
    lport: int,
    rport_raw: int,
    lip: bytes,
    rip: bytes,
    pid_tgid: int,
    comm: bytes = b"",
) -> bytes:
    if family == 2:
        return EVENT.pack(
            1_000,
            pid_tgid,
            99,
            op,
            family,
            lport,
            rport_raw,
            lip,
            rip,
            b"\0" * 16,
            b"\0" * 16,
            3,
            comm,
        )
    return EVENT.pack(
        1_000, pid_tgid, 99, op, family, lport, rport_raw, b"\0" * 4, b"\0" * 4, lip, rip, 0, comm
    )


def test_program_captures_comm_on_connect_only() -> None:
    prog = build_sockops_program(queue_fd=11, drops_fd=12, ops=(3, 5))
    calls = [i.imm for i in prog if isinstance(i, Insn) and i.code == CALL]
    assert FN_GET_CURRENT_COMM in calls
    jne = [i for i in prog if isinstance(i, Insn) and i.code == JNE_K]
    assert [(i.imm, i.target) for i in jne] == [(3, "no_comm")]  # skipped for PASSIVE (softirq)
    plain = build_sockops_program(queue_fd=11, drops_fd=12, ops=(3, 5), comm=False)
    assert FN_GET_CURRENT_COMM not in [
        i.imm for i in plain if isinstance(i, Insn) and i.code == CALL
    ]
    assert EVENT.size == 104


def test_parse_event_comm() -> None:
    raw = _record(
        3, 2, 1, 0x901F0000, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]), 7 << 32, b"curl"
    )
    assert parse_event(raw).comm == "curl"
    full = _record(3, 2, 1, 0x901F0000, bytes(4), bytes(4), 7 << 32, b"php-fpm: pool w\0")
    assert parse_event(full).comm == "php-fpm: pool w"
    passive = _record(5, 2, 8080, 0x901F0000, bytes(4), bytes(4), 0, b"")
    assert parse_event(passive).comm is None


def test_parse_event_ipv4_connect() -> None:
    raw = _record(
        3, 2, 53110, 0x901F0000, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 2]), (4242 << 32) | 4243
    )
    ev = parse_event(raw, mono_to_real_ns=5)
    assert ev.kind is ConnectKind.ACTIVE
    assert ev.family is Family.INET
    assert ev.local == Endpoint(ipaddress.IPv4Address("127.0.0.1"), 53110)
    assert ev.remote == Endpoint(ipaddress.IPv4Address("127.0.0.2"), 8080)
    assert (ev.pid, ev.tid, ev.cookie, ev.at_ns, ev.netns_cookie) == (4242, 4243, 99, 1_005, 3)


def test_parse_event_ipv6_passive_has_no_pid() -> None:
    one = ipaddress.IPv6Address("::1").packed
    raw = _record(5, 10, 8080, 0xD9CF0000, one, one, (1 << 32) | 1)
    ev = parse_event(raw)
    assert (
        ev.kind is ConnectKind.PASSIVE
        and ev.pid is None
        and ev.tid is None
        and ev.netns_cookie is None
    )
    assert ev.remote.port == 0xCFD9 and str(ev.local) == "[::1]:8080"


def test_parse_event_rejects_bad_input() -> None:
    with pytest.raises(ParseError):
        parse_event(b"\0" * 80)
    with pytest.raises(ParseError):
        parse_event(_record(3, 7, 1, 1, b"\0" * 4, b"\0" * 4, 0))


def test_find_cgroup2_root() -> None:
    hybrid = "cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n"
    assert find_cgroup2_root(hybrid) == "/sys/fs/cgroup/unified"
    unified = "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\ncgroup2 /mnt/x cgroup2 rw 0 0\n"
    assert find_cgroup2_root(unified) == "/sys/fs/cgroup"
    assert find_cgroup2_root("proc /proc proc rw 0 0\n") is None


def test_remote_port_decoding() -> None:
    assert ebpf._port_from_ctx(0x901F0000) == 8080
    assert ebpf._port_from_ctx(0x50000000) == 80


def test_program_without_the_netns_helper_stores_zero() -> None:
    prog = [i for i in build_sockops_program(1, 2, (3,), netns_cookie=False) if isinstance(i, Insn)]
    assert not any(i.code == 0x85 and i.imm == 122 for i in prog)
    zero = [i for i in prog if i.code == 0x7A and i.off == -104 + 80]
    assert len(zero) == 1 and zero[0].imm == 0


def test_namespace_filter_skips_other_namespaces_in_the_kernel() -> None:
    prog = build_sockops_program(1, 2, (3,), only_netns=0x1_0000_0007)
    code = assemble(prog)
    insns = [i for i in prog if isinstance(i, Insn)]
    k = next(n for n, i in enumerate(insns) if i.code == LD_IMM64 and i.src == 0)
    assert (
        insns[k].imm == 0x1_0000_0007 and insns[k + 1].code == 0x5D and insns[k + 1].target == "out"
    )
    assert insns[k - 2].imm == 122  # right after bpf_get_netns_cookie and its store
    assert len(code) // 8 == 69 - 1 + 3  # one op test fewer, + ld_imm64 (2 slots) + jne


def test_ring_buffer_program_writes_with_no_wakeup_and_counts_failures() -> None:
    prog = [i for i in build_sockops_program(11, 12, (3, 5), ringbuf=True) if isinstance(i, Insn)]
    calls = [i.imm for i in prog if i.code == 0x85]
    assert 130 in calls and 87 not in calls  # bpf_ringbuf_output, not bpf_map_push_elem
    k = next(n for n, i in enumerate(prog) if i.code == 0x85 and i.imm == 130)
    assert (prog[k - 2].dst, prog[k - 2].imm) == (3, EVENT.size)  # r3 = record size
    assert (prog[k - 1].dst, prog[k - 1].imm) == (4, 1)  # r4 = BPF_RB_NO_WAKEUP
    assert (
        prog[k + 1].code == JEQ_K and prog[k + 1].target == "out"
    )  # 0 = written; else count a drop
    assert len(assemble(build_sockops_program(11, 12, (3, 5), ringbuf=True))) // 8 == 69 + 1
