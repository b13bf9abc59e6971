"""The /proc fd scan in a forked child, so it runs in parallel with the netlink dump on another core.

In a thread the scan barely overlaps the dump: its Python loop (one ``readlink`` per fd) holds the GIL
most of the time. A forked child has its own interpreter lock; it sends back a compact binary result
over a pipe (the wire format of :mod:`~loopscope.backends.linux.fdtables`), read by a parent thread
(``os.read`` releases the GIL). If ``fork`` is not possible the scan runs in a thread instead. Same
result either way.
"""

from __future__ import annotations

import array
import os
import threading
from collections.abc import Collection

from loopscope.backends.linux.fdtables import HEADER, encode_tables, fork_scan
from loopscope.backends.linux.procfs import OwnerScan, ProcRoot, scan_socket_owners
from loopscope.errors import ParseError
from loopscope.model import NetnsId, ProcessKey

__all__ = [
    "OwnerScan",
    "PendingScan",
    "collect_forked",
    "decode_scan",
    "encode_scan",
    "start_owner_scan",
]


def encode_scan(scan: OwnerScan) -> bytes:
    """Serialize an :class:`OwnerScan` (the wire format of :mod:`~loopscope.backends.linux.fdtables`)."""
    return encode_tables(scan.owners, scan.pid_netns, scan.denied_pids, scan.vanished_pids)


def decode_scan(data: bytes) -> OwnerScan:
    """Inverse of :func:`encode_scan`.

    Raises:
        ParseError: the data is truncated, its counts disagree with its length, or a pair names a
            process index past the list.
    """
    if len(data) < HEADER.size:
        raise ParseError("fd scan result truncated", path="fd-scan")
    denied, vanished, nkeys, npairs, nns = HEADER.unpack_from(data)
    if (len(data) - HEADER.size) % 8:
        raise ParseError("fd scan result is not whole 8-byte words", path="fd-scan")
    words = array.array("q")
    words.frombytes(data[HEADER.size :])
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


def collect_forked(
    pid: int,
    fd: int,
    root: ProcRoot = ProcRoot(),
    netns: Collection[NetnsId] | None = None,
) -> OwnerScan:
    """The result of a scan forked by :func:`~loopscope.backends.linux.fdtables.fork_scan`: reads
    ``fd`` to its end, closes it and reaps ``pid``; when the child failed, scans here instead (same
    result).

    Raises:
        ParseError: the child's bytes do not decode, or (scanning here) ``root`` cannot be listed.
    """
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
        return scan_socket_owners(root, netns=netns)
    return decode_scan(b"".join(chunks))


def _read_child(
    fd: int, pid: int, root: ProcRoot, netns: Collection[NetnsId] | None, pending: PendingScan
) -> None:
    try:
        pending._finish(collect_forked(pid, fd, root, netns))
    except BaseException as exc:  # handed to the caller by result()
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
    forked = fork_scan(root.path, netns=netns) if fork else None
    if forked is None:
        threading.Thread(
            target=_in_thread, args=(root, netns, pending), name="fd-scan", daemon=True
        ).start()
        return pending
    pid, fd = forked
    threading.Thread(
        target=_read_child, args=(fd, pid, root, netns, pending), name="fd-scan", daemon=True
    ).start()
    return pending
