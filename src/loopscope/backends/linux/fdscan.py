"""The /proc fd scan in a forked child, so it runs in parallel with the netlink dump on another core.

In a thread the scan barely overlaps the dump: its Python loop (one ``readlink`` per fd) holds the GIL
most of the time. A forked child has its own interpreter lock; it sends back a compact binary result
over a pipe, read by a parent thread (``os.read`` releases the GIL). If ``fork`` is not possible the scan
runs in a thread instead. Same result either way.

Wire format (native byte order): header ``=qqqqq`` (denied, vanished, keys, pairs, namespaces), then
``keys`` pairs ``(pid, start_ticks)``, ``pairs`` pairs ``(inode, key index)`` in owner order, and
``namespaces`` triples ``(dev, ino, pid)``; every number an ``int64``.
"""

from __future__ import annotations

import array
import os
import struct
import threading
from collections.abc import Collection, Mapping, Sequence

from loopscope.backends.linux.procfs import (
    OwnerScan,
    ProcRoot,
    scan_fd_tables,
    scan_socket_owners,
)
from loopscope.errors import ParseError
from loopscope.model import NetnsId, ProcessKey

__all__ = ["OwnerScan", "PendingScan", "decode_scan", "encode_scan", "start_owner_scan"]

_HEADER = struct.Struct("=qqqqq")


def encode_scan(scan: OwnerScan) -> bytes:
    """Serialize an :class:`OwnerScan` (see the module docstring)."""
    return _encode(scan.owners, scan.pid_netns, scan.denied_pids, scan.vanished_pids)


def _encode(
    owners: Mapping[int, Sequence[ProcessKey]],
    pid_netns: Mapping[NetnsId, int],
    denied_pids: int,
    vanished_pids: int,
) -> bytes:
    keys: list[ProcessKey] = sorted({k for ks in owners.values() for k in ks})
    index = {k: i for i, k in enumerate(keys)}
    key_words = array.array("q", [x for k in keys for x in k])
    pair_words = array.array(
        "q", [x for inode, ks in owners.items() for k in ks for x in (inode, index[k])]
    )
    ns_words = array.array("q", [x for ns, pid in pid_netns.items() for x in (ns.dev, ns.ino, pid)])
    head = _HEADER.pack(
        denied_pids, vanished_pids, len(keys), len(pair_words) // 2, len(ns_words) // 3
    )
    return head + key_words.tobytes() + pair_words.tobytes() + ns_words.tobytes()


def decode_scan(data: bytes) -> OwnerScan:
    """Inverse of :func:`encode_scan`.

    Raises:
        ParseError: the data is truncated, its counts disagree with its length, or a pair names a
            process index past the list.
    """
    if len(data) < _HEADER.size:
        raise ParseError("fd scan result truncated", path="fd-scan")
    denied, vanished, nkeys, npairs, nns = _HEADER.unpack_from(data)
    if (len(data) - _HEADER.size) % 8:
        raise ParseError("fd scan result is not whole 8-byte words", path="fd-scan")
    words = array.array("q")
    words.frombytes(data[_HEADER.size :])
    if min(nkeys, npairs, nns) < 0 or len(words) != 2 * nkeys + 2 * npairs + 3 * nns:
        raise ParseError("fd scan result has the wrong length", path="fd-scan")
    keys = [ProcessKey(words[2 * i], words[2 * i + 1]) for i in range(nkeys)]
    owners: dict[int, tuple[ProcessKey, ...]] = {}
    base = 2 * nkeys
    pairs = words[base : base + 2 * npairs]
    get = owners.get
    it = iter(pairs)
    try:
        for inode, idx in zip(it, it, strict=False):
            held = get(inode)
            owners[inode] = (keys[idx],) if held is None else (*held, keys[idx])
    except IndexError:
        raise ParseError(
            "fd scan result names a process it does not list", path="fd-scan"
        ) from None
    base += 2 * npairs
    ns = words[base:]
    pid_netns = {NetnsId(ns[i], ns[i + 1]): ns[i + 2] for i in range(0, len(ns), 3)}
    return OwnerScan(
        owners=owners,
        keys={k.pid: k for k in keys},
        pid_netns=pid_netns,
        denied_pids=denied,
        vanished_pids=vanished,
    )


class PendingScan:
    """A running scan; :meth:`result` waits for it."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._value: OwnerScan | None = None
        self._error: BaseException | None = None

    def _finish(self, value: OwnerScan | None = None, error: BaseException | None = None) -> None:
        self._value, self._error = value, error
        self._done.set()

    def result(self) -> OwnerScan:
        """The scan result.

        Raises:
            Whatever the scan raised (e.g. ParseError when /proc cannot be listed).
        """
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


def _in_thread(root: ProcRoot, netns: Collection[NetnsId] | None, pending: PendingScan) -> None:
    try:
        pending._finish(scan_socket_owners(root, netns=netns))
    except BaseException as exc:  # handed to the caller by result()
        pending._finish(error=exc)


def _read_child(
    fd: int, pid: int, root: ProcRoot, netns: Collection[NetnsId] | None, pending: PendingScan
) -> None:
    chunks: list[bytes] = []
    try:
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        _in_thread(root, netns, pending)  # the child failed: do the scan here, same result
        return
    try:
        pending._finish(decode_scan(b"".join(chunks)))
    except BaseException as exc:
        pending._finish(error=exc)


def start_owner_scan(
    root: ProcRoot = ProcRoot(), *, netns: Collection[NetnsId] | None = None, fork: bool = True
) -> PendingScan:
    """Start the /proc fd scan; returns at once.

    Args:
        root: where /proc is.
        netns: read only processes of these namespaces (see
            :func:`~loopscope.backends.linux.procfs.scan_socket_owners`); None reads every process.
        fork: scan in a forked child (parallel with the caller's netlink dumps on another core); False,
            or when fork fails, scan in a thread of this process.
    """
    pending = PendingScan()
    in_thread = threading.Thread(
        target=_in_thread, args=(root, netns, pending), name="fd-scan", daemon=True
    )
    if not fork:
        in_thread.start()
        return pending
    try:
        read_fd, write_fd = os.pipe()
    except OSError:
        in_thread.start()
        return pending
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        in_thread.start()
        return pending
    if pid == 0:  # child: scan, write, leave without running any cleanup of the parent's state
        code = 1
        try:
            os.close(read_fd)
            owners, _keys, pid_netns, denied, vanished = scan_fd_tables(
                root, skip_pid=os.getpid(), netns=netns
            )
            data = _encode(owners, pid_netns, denied, vanished)
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view) :]
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    threading.Thread(
        target=_read_child, args=(read_fd, pid, root, netns, pending), name="fd-scan", daemon=True
    ).start()
    return pending
