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
from dataclasses import dataclass, field

from loopscope.backends.linux.procfs import FdScan, ProcRoot, scan_socket_owners
from loopscope.errors import ParseError
from loopscope.model import NetnsId, ProcessKey

__all__ = ["OwnerScan", "decode_scan", "encode_scan", "start_owner_scan"]

_HEADER = struct.Struct("=qqqqq")


@dataclass(slots=True)
class OwnerScan:
    """What a snapshot needs from the fd scan."""

    owners: dict[int, tuple[ProcessKey, ...]] = field(default_factory=dict)
    """Socket inode -> keys of the processes holding it, sorted by pid."""
    pid_netns: dict[NetnsId, int] = field(default_factory=dict)
    """Each namespace seen -> one pid inside it."""
    denied_pids: int = 0
    """Processes whose fd table could not be read (EACCES)."""
    vanished_pids: int = 0
    """Processes that exited during the scan."""


def encode_scan(scan: FdScan) -> bytes:
    """Serialize an FdScan (see the module docstring)."""
    keys: list[ProcessKey] = sorted({k for ks in scan.owners.values() for k in ks})
    index = {k: i for i, k in enumerate(keys)}
    key_words = array.array("q", [x for k in keys for x in k])
    pair_words = array.array(
        "q", [x for inode, ks in scan.owners.items() for k in ks for x in (inode, index[k])]
    )
    ns_words = array.array(
        "q", [x for ns, pid in scan.pid_netns.items() for x in (ns.dev, ns.ino, pid)]
    )
    head = _HEADER.pack(
        scan.denied_pids, scan.vanished_pids, len(keys), len(pair_words) // 2, len(ns_words) // 3
    )
    return head + key_words.tobytes() + pair_words.tobytes() + ns_words.tobytes()


def decode_scan(data: bytes) -> OwnerScan:
    """Inverse of :func:`encode_scan`.

    Raises:
        ParseError: the data is truncated or its counts disagree with its length.
    """
    if len(data) < _HEADER.size:
        raise ParseError("fd scan result truncated", path="fd-scan")
    denied, vanished, nkeys, npairs, nns = _HEADER.unpack_from(data)
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
    for inode, idx in zip(it, it, strict=False):
        held = get(inode)
        owners[inode] = (keys[idx],) if held is None else (*held, keys[idx])
    base += 2 * npairs
    ns = words[base:]
    pid_netns = {NetnsId(ns[i], ns[i + 1]): ns[i + 2] for i in range(0, len(ns), 3)}
    return OwnerScan(owners=owners, pid_netns=pid_netns, denied_pids=denied, vanished_pids=vanished)


class _Pending:
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


def _in_thread(root: ProcRoot, pending: _Pending) -> None:
    try:
        scan = scan_socket_owners(root)
        pending._finish(
            OwnerScan(
                owners=scan.owner_tuples(),
                pid_netns=scan.pid_netns,
                denied_pids=scan.denied_pids,
                vanished_pids=scan.vanished_pids,
            )
        )
    except BaseException as exc:  # handed to the caller by result()
        pending._finish(error=exc)


def _read_child(fd: int, pid: int, root: ProcRoot, pending: _Pending) -> None:
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
        _in_thread(root, pending)  # the child failed: do the scan here, same result
        return
    try:
        pending._finish(decode_scan(b"".join(chunks)))
    except BaseException as exc:
        pending._finish(error=exc)


def start_owner_scan(root: ProcRoot = ProcRoot()) -> _Pending:
    """Start the /proc fd scan in a forked child (a thread if fork fails); returns at once."""
    pending = _Pending()
    try:
        read_fd, write_fd = os.pipe()
    except OSError:
        threading.Thread(target=_in_thread, args=(root, pending), daemon=True).start()
        return pending
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        threading.Thread(target=_in_thread, args=(root, pending), daemon=True).start()
        return pending
    if pid == 0:  # child: scan, write, leave without running any cleanup of the parent's state
        code = 1
        try:
            os.close(read_fd)
            data = encode_scan(scan_socket_owners(root, skip_pid=os.getpid()))
            view = memoryview(data)
            while view:
                view = view[os.write(write_fd, view) :]
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    threading.Thread(
        target=_read_child, args=(read_fd, pid, root, pending), name="fd-scan", daemon=True
    ).start()
    return pending
