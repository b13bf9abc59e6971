"""bpf(2) from pure Python: the syscall through ctypes, an instruction assembler, maps, and a
BPF_MAP_TYPE_RINGBUF reader over mmap. No compiler, bcc, libbpf or kernel headers at run time.

Sources of truth: include/uapi/linux/bpf.h (``union bpf_attr``, map types, helper ids from
``__BPF_FUNC_MAPPER``, ``BPF_RINGBUF_*``), Documentation/bpf/standardization/instruction-set.rst
(encoding), kernel/bpf/ringbuf.c (ring layout: a consumer page, a producer page, then the data pages
mapped twice so a record that wraps reads contiguously).
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import mmap
import platform
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from loopscope.errors import BackendUnavailable, errno_name

__all__ = [
    "BPF_CGROUP_SOCK_OPS",
    "BPF_PROG_TYPE_SOCK_OPS",
    "BpfSyscall",
    "Insn",
    "Label",
    "RingBuffer",
    "assemble",
    "bpf_attr",
    "bpf_failure",
    "create_map",
    "link_to_cgroup",
    "load_sockops_program",
]

# --- bpf(2) commands, map types, helpers (include/uapi/linux/bpf.h) ---
_SYS_BPF = {
    "x86_64": 321,
    "aarch64": 280,
    "armv7l": 386,
    "riscv64": 280,
    "ppc64le": 361,
    "s390x": 351,
}
BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_PROG_LOAD = 0, 1, 5
BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_QUERY, BPF_MAP_LOOKUP_AND_DELETE_ELEM, BPF_LINK_CREATE = (
    15,
    16,
    21,
    28,
)
BPF_ENABLE_STATS, BPF_STATS_RUN_TIME = 32, 0
BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_QUEUE, BPF_MAP_TYPE_RINGBUF = 2, 22, 27
BPF_PSEUDO_MAP_FD = 1
FN_MAP_LOOKUP_ELEM, FN_KTIME_GET_NS, FN_GET_CURRENT_PID_TGID = 1, 5, 14
FN_GET_SOCKET_COOKIE, FN_MAP_PUSH_ELEM, FN_GET_NETNS_COOKIE, FN_RINGBUF_OUTPUT = 46, 87, 122, 130
BPF_RB_NO_WAKEUP = 1  # bpf_ringbuf_output flag: do not wake a poller (we read on a timer)
RINGBUF_BUSY_BIT, RINGBUF_DISCARD_BIT, RINGBUF_HDR_SZ = 1 << 31, 1 << 30, 8

# --- instruction encoding: struct bpf_insn {u8 code; u8 dst:4, src:4; s16 off; s32 imm} ---
_INSN = struct.Struct("<BBhi")
# opcode = operation | source | class
LDX_W, LDX_DW = 0x61, 0x79  # BPF_LDX | BPF_MEM | BPF_W / BPF_DW
STX_W, STX_DW = 0x63, 0x7B  # BPF_STX | BPF_MEM | size
ST_W, ST_DW = 0x62, 0x7A  # BPF_ST | BPF_MEM | size (store immediate)
MOV64_K, MOV64_X = 0xB7, 0xBF  # BPF_ALU64 | BPF_MOV | BPF_K / BPF_X
ADD64_K = 0x07  # BPF_ALU64 | BPF_ADD | BPF_K
JEQ_K, JNE_K, JA = 0x15, 0x55, 0x05  # BPF_JMP | BPF_JEQ / BPF_JNE | BPF_K; BPF_JMP | BPF_JA
JNE_X = 0x5D  # BPF_JMP | BPF_JNE | BPF_X: if dst != src goto
CALL, EXIT = 0x85, 0x95  # BPF_JMP | BPF_CALL / BPF_EXIT
LD_IMM64 = 0x18  # BPF_LD | BPF_DW | BPF_IMM (two slots)
ATOMIC_DW = (
    0xDB  # BPF_STX | BPF_ATOMIC | BPF_DW, imm = BPF_ADD (0): lock *(u64 *)(dst + off) += src
)


@dataclass(frozen=True, slots=True)
class Insn:
    """One instruction; ``target`` names a :class:`Label` for jumps (``off`` is then computed)."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    target: str | None = None
    comment: str = ""

    def encode(self, off: int | None = None) -> bytes:
        """8 bytes, little-endian; ``dst`` in the low nibble of byte 1.

        Example: ``Insn(MOV64_X, dst=6, src=1).encode().hex() == "bf16000000000000"``.
        """
        return _INSN.pack(
            self.code, (self.src << 4) | self.dst, self.off if off is None else off, self.imm
        )


@dataclass(frozen=True, slots=True)
class Label:
    """A jump target between instructions."""

    name: str


def _slots(item: Insn) -> int:
    return 2 if item.code == LD_IMM64 else 1


def assemble(program: Sequence[Insn | Label]) -> bytes:
    """Encode a program, resolving label jumps to ``off = target_slot - (slot + 1)``.

    ``LD_IMM64`` takes two slots: the second carries the upper 32 bits of the immediate.

    Raises:
        ValueError: a jump to an unknown label.
    """
    labels: dict[str, int] = {}
    slot = 0
    for item in program:
        if isinstance(item, Label):
            labels[item.name] = slot
        else:
            slot += _slots(item)
    out = bytearray()
    slot = 0
    for item in program:
        if isinstance(item, Label):
            continue
        off = None
        if item.target is not None:
            if item.target not in labels:
                raise ValueError(f"unknown label {item.target}")
            off = labels[item.target] - (slot + 1)
        if item.code == LD_IMM64:
            out += _INSN.pack(item.code, (item.src << 4) | item.dst, 0, item.imm & 0xFFFFFFFF)
            out += _INSN.pack(0, 0, 0, (item.imm >> 32) & 0xFFFFFFFF)
        else:
            out += item.encode(off)
        slot += _slots(item)
    return bytes(out)


class BpfSyscall:
    """The bpf(2) syscall through libc ``syscall()``.

    Raises:
        BackendUnavailable: the syscall number of this architecture is unknown.
    """

    def __init__(self) -> None:
        nr = _SYS_BPF.get(platform.machine())
        if nr is None:
            raise BackendUnavailable(f"bpf(): unknown syscall number on {platform.machine()}")
        self.nr = nr
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long

    def call(self, cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
        """Run one command; returns the result or ``-errno``."""
        ret = self.libc.syscall(
            ctypes.c_long(self.nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr))
        )
        return int(ret) if ret >= 0 else -ctypes.get_errno()


def bpf_attr(*fields: tuple[int, str, int]) -> ctypes.Array[ctypes.c_char]:
    """A zeroed 128-byte ``union bpf_attr`` with ``(offset, struct format, value)`` fields packed in."""
    buf = ctypes.create_string_buffer(128)
    for off, fmt, value in fields:
        struct.pack_into(fmt, buf, off, value)
    return buf


def bpf_failure(what: str, err: int, extra: str = "") -> BackendUnavailable:
    """The error for a refused bpf() command (``err`` is a positive errno)."""
    name = errno_name(err)
    hint = (
        "; needs root (CAP_BPF + CAP_NET_ADMIN)"
        if err in (errno_mod.EPERM, errno_mod.EACCES)
        else ""
    )
    return BackendUnavailable(f"eBPF: {what} failed: {name}{hint}{extra}")


def create_map(
    bpf: BpfSyscall, map_type: int, key_size: int, value_size: int, entries: int, name: bytes
) -> int:
    """BPF_MAP_CREATE; returns the map fd (the caller closes it).

    Raises:
        BackendUnavailable: the kernel refused (unknown map type on an old kernel, no permission).
    """
    attr = bpf_attr(
        (0, "=I", map_type), (4, "=I", key_size), (8, "=I", value_size), (12, "=I", entries)
    )
    struct.pack_into("16s", attr, 28, name)  # map_name[16]
    fd = bpf.call(BPF_MAP_CREATE, attr)
    if fd < 0:
        raise bpf_failure(f"BPF_MAP_CREATE({name.decode()})", -fd)
    return fd


BPF_PROG_TYPE_SOCK_OPS = 13  # enum bpf_prog_type
BPF_CGROUP_SOCK_OPS = 3  # enum bpf_attach_type


def load_sockops_program(
    bpf: BpfSyscall,
    code: bytes,
    name: bytes,
    log: ctypes.Array[ctypes.c_char] | None = None,
) -> int:
    """BPF_PROG_LOAD of a BPF_PROG_TYPE_SOCK_OPS program (GPL, expected attach type
    BPF_CGROUP_SOCK_OPS); with ``log``, the verifier writes its log there (log_level 1).

    Returns:
        The program fd, or ``-errno`` when the kernel refused (the caller decides whether to retry
        another variant or raise :func:`bpf_failure`).
    """
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = bpf_attr(
        (0, "=I", BPF_PROG_TYPE_SOCK_OPS),
        (4, "=I", len(code) // 8),  # insn_cnt
        (8, "=Q", ctypes.addressof(insns)),
        (16, "=Q", ctypes.addressof(license_)),
        (24, "=I", 1 if log is not None else 0),  # log_level
        (28, "=I", len(log) if log is not None else 0),
        (32, "=Q", ctypes.addressof(log) if log is not None else 0),
        (68, "=I", BPF_CGROUP_SOCK_OPS),  # expected_attach_type
    )
    struct.pack_into("16s", attr, 48, name)  # prog_name[16]
    return bpf.call(BPF_PROG_LOAD, attr)


def link_to_cgroup(bpf: BpfSyscall, prog_fd: int, cgroup_fd: int, what: str) -> int:
    """BPF_LINK_CREATE of a sockops program on a cgroup; returns the link fd (closing it detaches).

    Raises:
        BackendUnavailable: the kernel refused.
    """
    attr = bpf_attr((0, "=I", prog_fd), (4, "=I", cgroup_fd), (8, "=I", BPF_CGROUP_SOCK_OPS))
    link = bpf.call(BPF_LINK_CREATE, attr)
    if link < 0:
        raise bpf_failure(f"BPF_LINK_CREATE({what})", -link)
    return link


_U64 = struct.Struct("=Q")
_U32 = struct.Struct("=I")


class RingBuffer:
    """Consumer side of a BPF_MAP_TYPE_RINGBUF, read through mmap without a syscall per record.

    Layout (kernel/bpf/ringbuf.c): page 0 is the consumer position (u64, read-write for us); page 1
    the producer position (u64, read-only); then ``size`` bytes of data, mapped twice in a row, so a
    record that wraps past the end reads contiguously. Each record is an 8-byte header (u32 length
    with the BUSY bit while the producer writes it and the DISCARD bit when dropped, u32 page offset)
    and the data, padded to 8 bytes. Positions only grow; ``pos & (size - 1)`` is the offset.

    Args:
        map_fd: the ringbuf map (the caller keeps and closes it).
        size: its ``max_entries`` in bytes (a power of 2, a multiple of the page size).

    Raises:
        BackendUnavailable: mmap refused.
    """

    def __init__(self, map_fd: int, size: int) -> None:
        page = mmap.PAGESIZE
        try:
            self._cons = mmap.mmap(
                map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0
            )
            self._prod = mmap.mmap(
                map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
            )
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"eBPF: cannot mmap the ring buffer: {exc}") from exc
        self._mask = size - 1
        self._data = page  # offset of the data pages inside the producer mapping

    @property
    def view(self) -> mmap.mmap:
        """The producer mapping: records are read from it at the offsets :meth:`records` yields."""
        return self._prod

    def records(self) -> Iterator[tuple[int, int]]:
        """``(offset into :attr:`view`, length)`` of each committed record, oldest first; the consumer
        position moves past each record once the caller has taken it (the next iteration step).

        Stops at the producer position or at a record still being written (BUSY). Discarded records
        are skipped. Call again later for the rest.
        """
        cons = _U64.unpack_from(self._cons, 0)[0]
        prod = _U64.unpack_from(self._prod, 0)[0]
        view, mask, base = self._prod, self._mask, self._data
        while cons < prod:
            hdr = base + (cons & mask)
            length = _U32.unpack_from(view, hdr)[0]
            if length & RINGBUF_BUSY_BIT:
                break
            size = length & ~(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT)
            if not length & RINGBUF_DISCARD_BIT:
                yield hdr + RINGBUF_HDR_SZ, size
            cons += (size + RINGBUF_HDR_SZ + 7) & ~7
            _U64.pack_into(self._cons, 0, cons)
            if cons >= prod:
                prod = _U64.unpack_from(self._prod, 0)[0]

    def pending_bytes(self) -> int:
        """Bytes committed or reserved but not yet consumed."""
        return int(_U64.unpack_from(self._prod, 0)[0] - _U64.unpack_from(self._cons, 0)[0])

    def close(self) -> None:
        """Unmap both regions. Idempotent."""
        for region in (self._cons, self._prod):
            if not region.closed:
                region.close()
