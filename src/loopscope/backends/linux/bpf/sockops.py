"""Pure-Python eBPF sockops collector: the client pid of every TCP connect, through bpf(2) via ctypes.

No compiler, bcc, libbpf or kernel headers at run time. The program (:func:`build_sockops_program`) is
hand-assembled, documented instruction by instruction, and writes one 104-byte :data:`EVENT` record per
``connect()`` (and per passive establishment; the connect record names the caller by its ``comm``) into a BPF_MAP_TYPE_RINGBUF with BPF_RB_NO_WAKEUP (kernel
>= 5.8): no wakeup in the connection's path, and Python reads the ring through mmap on its own timer,
without a syscall per record. Older kernels get a BPF_MAP_TYPE_QUEUE drained with one
BPF_MAP_LOOKUP_AND_DELETE_ELEM per record. The program is attached to the root cgroup v2 with
BPF_LINK_CREATE, so it sees every process of the host in every network namespace; closing the link fd
detaches it.

Sources of truth: include/uapi/linux/bpf.h (``struct bpf_sock_ops``, helper ids from
``__BPF_FUNC_MAPPER``), net/core/filter.c ``sock_ops_convert_ctx_access`` (``remote_port`` is the be16
port shifted left by 16 on little-endian hosts). Needs root (``kernel.unprivileged_bpf_disabled`` is 2
here). The syscall, assembler and ring reader live in :mod:`loopscope.backends.linux.bpf.syscall`, the program
in :mod:`loopscope.backends.linux.bpf.program`.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os
import struct
import time
from collections.abc import Sequence

from loopscope.backends.linux._fastrec import cached_endpoint, positional_constructor
from loopscope.backends.linux.bpf.program import (
    EVENT,
    OP_PASSIVE_ESTABLISHED,
    OP_TCP_CONNECT,
    build_sockops_program,
)
from loopscope.backends.linux.bpf.syscall import (
    BPF_CGROUP_SOCK_OPS,
    BPF_ENABLE_STATS,
    BPF_MAP_LOOKUP_AND_DELETE_ELEM,
    BPF_MAP_LOOKUP_ELEM,
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_QUEUE,
    BPF_MAP_TYPE_RINGBUF,
    BPF_OBJ_GET_INFO_BY_FD,
    BPF_PROG_QUERY,
    BPF_STATS_RUN_TIME,
    BpfSyscall,
    RingBuffer,
    assemble,
    bpf_attr,
    bpf_failure,
    create_map,
    link_to_cgroup,
    load_sockops_program,
)
from loopscope.errors import BackendUnavailable, ParseError
from loopscope.model import Family
from loopscope.model.events import ConnectEvent, ConnectKind

__all__ = [
    "EVENT",
    "OP_PASSIVE_ESTABLISHED",
    "OP_TCP_CONNECT",
    "SockopsCollector",
    "build_sockops_program",
    "find_cgroup2_root",
    "netns_cookie_of_current",
    "parse_event",
]

_INFO_RUN_TIME_NS, _INFO_RUN_CNT, _INFO_SIZE = 192, 200, 232  # struct bpf_prog_info offsets
_LITTLE_ENDIAN = struct.pack("=H", 1) == b"\x01\x00"


def _port_from_ctx(raw: int) -> int:
    """``remote_port`` ctx value -> port: the be16 port sits in the upper 16 bits (little-endian host).

    Example: ``_port_from_ctx(0x901F0000) == 8080`` (0x1F90 = 8080 in network order read as LE u16).
    """
    be16 = raw >> 16 if raw > 0xFFFF else raw  # big-endian hosts keep the port in the low half
    return ((be16 & 0xFF) << 8) | (be16 >> 8) if _LITTLE_ENDIAN else be16


_make_event = positional_constructor(ConnectEvent)
_ACTIVE, _PASSIVE = ConnectKind.ACTIVE, ConnectKind.PASSIVE
_INET, _INET6 = Family.INET, Family.INET6


def parse_event(data: bytes, *, mono_to_real_ns: int = 0) -> ConnectEvent:
    """Decode one 104-byte record (ring buffer or queue).

    Args:
        data: the record (see :data:`EVENT`).
        mono_to_real_ns: CLOCK_REALTIME - CLOCK_MONOTONIC, added to ``ktime_ns``.

    Example: a record with op 3, family 2, local_port 53110, remote_port 0x901F0000,
    local_ip4 ``7f000001``, pid_tgid ``4242 << 32 | 4243``, comm ``b"curl\\0..."`` ->
    ``ConnectEvent(kind=ACTIVE, local=127.0.0.1:53110, remote=127.0.0.1:8080, pid=4242, tid=4243,
    comm="curl")``.

    Raises:
        ParseError: wrong size or an unknown family.
    """
    if len(data) != EVENT.size:
        raise ParseError(f"sockops record is {len(data)} bytes, want {EVENT.size}", path="bpf")
    return _decode(EVENT.unpack(data), mono_to_real_ns)


_EventFields = tuple[int, int, int, int, int, int, int, bytes, bytes, bytes, bytes, int, bytes]
_COMMS: dict[bytes, str] = {}  # raw comm -> text (a host has few distinct names)


def _comm(raw: bytes) -> str | None:
    """``b"curl\\0\\0..."`` -> ``"curl"``; all zero -> None."""
    text = _COMMS.get(raw)
    if text is None:
        text = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
        if len(_COMMS) < 4096:
            _COMMS[raw] = text
    return text or None


def _decode(fields: _EventFields, mono_to_real_ns: int) -> ConnectEvent:
    """A ConnectEvent from the unpacked :data:`EVENT` fields.

    Raises:
        ParseError: an unknown family.
    """
    ktime, pid_tgid, cookie, op, family, lport, rport_raw, lip4, rip4, lip6, rip6, netns, comm = (
        fields
    )
    if family == 2:
        local, remote, fam = (
            cached_endpoint(lip4, lport),
            cached_endpoint(rip4, _port_from_ctx(rport_raw)),
            _INET,
        )
    elif family == 10:
        local, remote, fam = (
            cached_endpoint(lip6, lport),
            cached_endpoint(rip6, _port_from_ctx(rport_raw)),
            _INET6,
        )
    else:
        raise ParseError(f"unknown family {family} in sockops record", path="bpf", line=f"op={op}")
    if op == OP_TCP_CONNECT:
        # positional, in field order: at_ns, kind, family, local, remote, cookie, pid, tid,
        # netns_cookie, comm
        return _make_event(
            ktime + mono_to_real_ns,
            _ACTIVE,
            fam,
            local,
            remote,
            cookie,
            pid_tgid >> 32,
            pid_tgid & 0xFFFFFFFF,
            netns or None,
            _comm(comm),
        )
    return _make_event(
        ktime + mono_to_real_ns,
        _PASSIVE,
        fam,
        local,
        remote,
        cookie,
        None,
        None,
        netns or None,
        None,
    )


def netns_cookie_of_current() -> int | None:
    """``getsockopt(SO_NETNS_COOKIE)`` of a fresh socket: the calling thread's namespace cookie
    (kernel >= 5.14), None when unsupported."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, 71, 8), "little")
    except OSError:
        return None


def count_attached_sockops(cgroup_path: str) -> int:
    """How many sockops programs are attached to ``cgroup_path`` (BPF_PROG_QUERY; root only).

    Raises:
        BackendUnavailable: the query failed (not root, or no such cgroup).
    """
    try:
        fd = os.open(cgroup_path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise BackendUnavailable(f"cannot open cgroup {cgroup_path}: {exc}") from exc
    try:
        attr = bpf_attr(
            (0, "=I", fd), (4, "=I", BPF_CGROUP_SOCK_OPS)
        )  # target_fd, attach_type; prog_ids NULL
        ret = BpfSyscall().call(BPF_PROG_QUERY, attr)
        if ret < 0:
            raise bpf_failure("BPF_PROG_QUERY", -ret)
        return int(struct.unpack_from("=I", attr, 24)[0])  # prog_cnt
    finally:
        os.close(fd)


def find_cgroup2_root(mounts_text: str) -> str | None:
    """The first cgroup2 mount point in /proc/mounts text (``/sys/fs/cgroup`` preferred).

    Example: ``"cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0"`` -> ``"/sys/fs/cgroup/unified"``.
    """
    found: list[str] = []
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "cgroup2":
            found.append(parts[1].replace("\\040", " "))
    if "/sys/fs/cgroup" in found:
        return "/sys/fs/cgroup"
    return found[0] if found else None


class SockopsCollector:
    """Loads and attaches the sockops program; :meth:`drain` returns the recorded events.

    Args:
        cgroup_path: cgroup v2 directory to attach to; the cgroup2 root from /proc/mounts by default.
        ring_bytes: ring buffer size (a power of 2; 104-byte records plus an 8-byte header each);
            a full ring drops and counts (:meth:`drops`).
        ops: sockops callbacks to record (client connect and server establishment by default).
        only_netns_cookie: record only sockets of this namespace (its SO_NETNS_COOKIE); every namespace
            when None, or when the kernel lacks bpf_get_netns_cookie for sockops (``has_netns_cookie``).
        transport: ``"ringbuf"`` (kernel >= 5.8), ``"queue"``, or ``"auto"`` (ringbuf, else queue);
            the one in use is in :attr:`transport`.

    Raises:
        BackendUnavailable: no cgroup2 mount, not root, or the kernel refused the map/program/link
            (the verifier log is in the message).
    """

    def __init__(
        self,
        cgroup_path: str | None = None,
        *,
        ring_bytes: int = 4 << 20,
        ops: Sequence[int] = (OP_TCP_CONNECT, OP_PASSIVE_ESTABLISHED),
        only_netns_cookie: int | None = None,
        transport: str = "auto",
    ) -> None:
        self._fds: list[int] = []
        self._ring: RingBuffer | None = None
        self.link_fd: int | None = None
        self._bpf = BpfSyscall()
        if cgroup_path is None:
            with open("/proc/mounts", encoding="utf-8") as fh:
                cgroup_path = find_cgroup2_root(fh.read())
            if cgroup_path is None:
                raise BackendUnavailable("eBPF sockops: no cgroup2 mount in /proc/mounts")
        self.cgroup_path = cgroup_path
        try:
            self._make_maps(transport, ring_bytes)
            self._load(ops, only_netns_cookie)
            self.attach()
        except BaseException:
            self.close()
            raise
        self.mono_to_real_ns = time.time_ns() - time.monotonic_ns()
        self._value = ctypes.create_string_buffer(EVENT.size)
        self._drain_attr = bpf_attr(
            (0, "=I", self.queue_fd), (8, "=Q", 0), (16, "=Q", ctypes.addressof(self._value))
        )
        self.events_read = 0

    def _map(self, map_type: int, key_size: int, value_size: int, entries: int, name: bytes) -> int:
        fd = create_map(self._bpf, map_type, key_size, value_size, entries, name)
        self._fds.append(fd)
        return fd

    def _make_maps(self, transport: str, ring_bytes: int) -> None:
        if transport not in ("auto", "ringbuf", "queue"):
            raise ValueError(f"transport must be auto, ringbuf or queue, not {transport!r}")
        self.transport = "queue"
        if transport in ("auto", "ringbuf"):
            try:
                self.queue_fd = self._map(BPF_MAP_TYPE_RINGBUF, 0, 0, ring_bytes, b"ls_connects")
                self._ring = RingBuffer(self.queue_fd, ring_bytes)
                self.transport = "ringbuf"
            except BackendUnavailable:
                if transport == "ringbuf":
                    raise
        if self.transport == "queue":
            entries = ring_bytes // (EVENT.size + 8)
            self.queue_fd = self._map(BPF_MAP_TYPE_QUEUE, 0, EVENT.size, entries, b"ls_connects")
        self.drops_fd = self._map(BPF_MAP_TYPE_ARRAY, 4, 8, 1, b"ls_drops")

    def _load(self, ops: Sequence[int], only_netns: int | None) -> None:
        log = ctypes.create_string_buffer(1 << 16)
        attempts = [
            (True, True, 0),
            (False, True, 0),
            (True, False, 0),
            (False, False, 0),
            (False, False, 1),
        ]  # netns cookie and comm helpers first; verifier log last
        for with_netns, with_comm, log_level in attempts:
            code = assemble(
                build_sockops_program(
                    self.queue_fd,
                    self.drops_fd,
                    ops,
                    netns_cookie=with_netns,
                    only_netns=only_netns,
                    ringbuf=self.transport == "ringbuf",
                    comm=with_comm,
                )
            )
            fd = load_sockops_program(self._bpf, code, b"ls_sockops", log if log_level else None)
            if fd >= 0:
                self.has_netns_cookie = with_netns
                self.has_comm = with_comm
                break
            if log_level == 1 or -fd in (errno_mod.EPERM,):
                text = log.value.decode(errors="replace").strip().splitlines()[-3:]
                raise bpf_failure(
                    "BPF_PROG_LOAD", -fd, f" (verifier: {' | '.join(text)})" if text else ""
                )
        self.prog_fd = fd
        self._fds.append(fd)
        try:
            self.cgroup_fd = os.open(self.cgroup_path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise BackendUnavailable(
                f"eBPF sockops: cannot open cgroup {self.cgroup_path}: {exc}"
            ) from exc
        self._fds.append(self.cgroup_fd)

    @property
    def attached(self) -> bool:
        """Whether the program is linked to the cgroup (it runs on every socket event)."""
        return self.link_fd is not None

    def attach(self) -> None:
        """Link the loaded program to the cgroup (BPF_LINK_CREATE); no-op when attached.

        Raises:
            BackendUnavailable: the kernel refused, or the collector is closed.
        """
        if self.link_fd is not None:
            return
        if not self._fds:
            raise BackendUnavailable("eBPF sockops collector is closed")
        self.link_fd = link_to_cgroup(self._bpf, self.prog_fd, self.cgroup_fd, "sockops")

    def detach(self) -> None:
        """Unlink the program (close the link fd): the kernel stops running it; the program, the
        buffer and what it holds stay until :meth:`close`. No-op when detached."""
        if self.link_fd is not None:
            os.close(self.link_fd)
            self.link_fd = None

    def drain(self, max_events: int = 1 << 20) -> list[ConnectEvent]:
        """Every record written so far, oldest first (read from the mmap'ed ring, or popped from the
        queue with one BPF_MAP_LOOKUP_AND_DELETE_ELEM each).

        Raises:
            BackendUnavailable: the collector is closed.
            ParseError: a malformed record.
        """
        if not self._fds:
            raise BackendUnavailable("eBPF sockops collector is closed")
        out: list[ConnectEvent] = []
        mono = self.mono_to_real_ns
        if self._ring is not None:
            view, unpack = self._ring.view, EVENT.unpack_from
            for offset, size in self._ring.records():
                if len(out) >= max_events:
                    break  # this record is not consumed: the next drain starts with it
                if size != EVENT.size:
                    raise ParseError(
                        f"sockops record is {size} bytes, want {EVENT.size}", path="bpf"
                    )
                out.append(_decode(unpack(view, offset), mono))
        else:
            call, nr, size_arg = (
                self._bpf.libc.syscall,
                ctypes.c_long(self._bpf.nr),
                ctypes.c_uint(128),
            )
            attr, cmd = self._drain_attr, ctypes.c_int(BPF_MAP_LOOKUP_AND_DELETE_ELEM)
            for _ in range(max_events):
                if call(nr, cmd, attr, size_arg) < 0:
                    break  # ENOENT: empty
                out.append(parse_event(self._value.raw, mono_to_real_ns=mono))
        self.events_read += len(out)
        return out

    def enable_run_stats(self) -> None:
        """Ask the kernel to time every program run (BPF_ENABLE_STATS; on while the collector lives).
        It adds two clock reads per run: for benchmarks, not for measuring latency.

        Raises:
            BackendUnavailable: refused (kernel < 5.8, or not root).
        """
        fd = self._bpf.call(BPF_ENABLE_STATS, bpf_attr((0, "=I", BPF_STATS_RUN_TIME)))
        if fd < 0:
            raise bpf_failure("BPF_ENABLE_STATS", -fd)
        self._fds.insert(0, fd)  # closed last

    def run_stats(self) -> tuple[int, int]:
        """``(runs, total_ns)`` of the program in the kernel since stats were enabled (0, 0 when off).

        Raises:
            BackendUnavailable: BPF_OBJ_GET_INFO_BY_FD failed.
        """
        info = ctypes.create_string_buffer(_INFO_SIZE)
        attr = bpf_attr(
            (0, "=I", self.prog_fd), (4, "=I", _INFO_SIZE), (8, "=Q", ctypes.addressof(info))
        )
        ret = self._bpf.call(BPF_OBJ_GET_INFO_BY_FD, attr)
        if ret < 0:
            raise bpf_failure("BPF_OBJ_GET_INFO_BY_FD", -ret)
        run_ns, runs = struct.unpack_from("=QQ", info, _INFO_RUN_TIME_NS)
        return int(runs), int(run_ns)

    def drops(self) -> int:
        """Records the program could not write because the ring (or queue) was full."""
        if not self._fds:
            return 0
        value = ctypes.create_string_buffer(8)
        key = ctypes.create_string_buffer(4)
        attr = bpf_attr(
            (0, "=I", self.drops_fd),
            (8, "=Q", ctypes.addressof(key)),
            (16, "=Q", ctypes.addressof(value)),
        )
        if self._bpf.call(BPF_MAP_LOOKUP_ELEM, attr) < 0:
            return 0
        return int(struct.unpack("=Q", value.raw)[0])

    def close(self) -> None:
        """Detach (close the link fd), unmap the ring, free the program and maps. Idempotent."""
        self.detach()
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        while self._fds:
            os.close(self._fds.pop())

    def __enter__(self) -> SockopsCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
