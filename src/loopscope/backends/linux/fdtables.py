"""The /proc/*/fd walk: socket inode -> the processes holding it, on the standard library alone.

This module imports only ``os``, ``array`` and ``struct`` (and :mod:`loopscope.errors`), so a process
can fork the walk before importing the rest of loopscope: ``ports --json`` does (``cli.fastpath``), and
the walk, one ``readlink`` per fd (~7 us each here, 2,000 fds ~14 ms), then runs on the other core
while the parent imports. :func:`~loopscope.backends.linux.procfs.scan_socket_owners` (in-process)
and :mod:`~loopscope.backends.linux.fdscan` (a forked child beside the netlink dumps) use the same
walk. Sources: proc(5) (``/proc/PID/fd`` links ``socket:[INODE]``, ``/proc/PID/stat`` field 22,
``/proc/PID/ns/net``).

Wire format of :func:`encode_tables` (native byte order): header ``=qqqqq`` (denied, vanished, keys,
pairs, namespaces), then ``keys`` pairs ``(pid, start_ticks)``, ``pairs`` pairs ``(inode, key
index)`` in owner order, and ``namespaces`` triples ``(dev, ino, pid)``; every number an ``int64``.
"""

from __future__ import annotations

import array
import os
import struct
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TypeVar

from loopscope.errors import ParseError

__all__ = ["HEADER", "encode_tables", "fork_scan", "scan_fd_tables"]

K = TypeVar("K", bound=tuple[int, int])
N = TypeVar("N", bound=tuple[int, int])

HEADER = struct.Struct("=qqqqq")
"""Header of the wire format: denied, vanished, keys, pairs, namespaces."""


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b)


def scan_fd_tables(
    proc: str = "/proc",
    *,
    want: set[int] | None = None,
    skip_pid: int | None = None,
    netns: Collection[tuple[int, int]] | None = None,
    make_key: Callable[[int, int], K] = _pair,  # type: ignore[assignment]
    make_ns: Callable[[int, int], N] = _pair,  # type: ignore[assignment]
) -> tuple[dict[int, list[K]], dict[int, K], dict[N, int], int, int]:
    """One pass over ``proc``/*/fd.

    Each /proc/PID/fd directory is opened once and read with ``os.readlink(name, dir_fd=...)``.
    Threads share the fd table, so only thread-group leaders (/proc/PID) are read.

    Args:
        proc: where /proc is (a recorded tree in tests).
        want: keep only these inodes (None keeps every socket inode).
        skip_pid: a process to leave out (a forked scanner holds copies of its parent's fds).
        netns: read only the fd tables of processes in these namespaces, as ``(st_dev, st_ino)`` of
            /proc/PID/ns/net (one ``stat`` each first; a busy host holds 100k socket fds in other
            namespaces). A socket passed to a process of another namespace is then missed (rare).
            None reads every process.
        make_key: ``(pid, start_ticks)`` -> the process key (``ProcessKey`` in-process; a plain
            tuple in a forked child, which need not import the model).
        make_ns: ``(st_dev, st_ino)`` -> the namespace id (``NetnsId`` in-process).

    Returns:
        ``(owners, keys, pid_netns, denied, vanished)``: socket inode -> keys of the processes holding
        it (sorted by pid), pid -> key, namespace -> one pid inside it, processes whose fd table or
        namespace could not be read (EACCES), processes that exited during the scan.

    Raises:
        ParseError: ``proc`` cannot be listed.
    """
    owners: dict[int, list[K]] = {}
    keys: dict[int, K] = {}
    pid_netns: dict[N, int] = {}
    denied = vanished = 0
    try:
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError as exc:
        raise ParseError(f"cannot list {proc}: {exc.strerror}", path=proc) from exc
    skip = str(skip_pid) if skip_pid is not None else None
    join = os.path.join
    for pid in pids:
        if pid == skip:
            continue
        ns: N | None = None
        if netns is not None:
            try:
                st = os.stat(join(proc, pid, "ns", "net"))
            except PermissionError:
                denied += 1  # its namespace is unknown: it may hold sockets of the wanted ones
                continue
            except OSError:
                vanished += 1
                continue
            ns = make_ns(st.st_dev, st.st_ino)
            if ns not in netns:
                continue
        try:
            dir_fd = os.open(join(proc, pid, "fd"), os.O_RDONLY | os.O_DIRECTORY)
        except PermissionError:
            denied += 1
            continue
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            vanished += 1
            continue
        found: list[int] = []
        try:
            try:
                names = os.listdir(dir_fd)
            except PermissionError:
                denied += 1
                continue
            except (FileNotFoundError, ProcessLookupError):
                vanished += 1
                continue
            for name in names:
                try:
                    link = os.readlink(name, dir_fd=dir_fd)
                except OSError:
                    continue  # the fd was closed between listdir and readlink
                if link.startswith("socket:["):
                    inode = int(link[8:-1])
                    if want is None or inode in want:
                        found.append(inode)
        finally:
            os.close(dir_fd)
        if not found:
            continue
        ticks = _start_ticks(proc, pid)
        if ticks is None:
            vanished += 1
            continue
        key = make_key(int(pid), ticks)
        keys[int(pid)] = key
        for inode in set(found):
            owners.setdefault(inode, []).append(key)
        if ns is None:
            try:
                st = os.stat(join(proc, pid, "ns", "net"))
                ns = make_ns(st.st_dev, st.st_ino)
            except OSError:
                pass  # namespace of an exiting or foreign process: it just stays unlisted
        if ns is not None:
            pid_netns.setdefault(ns, int(pid))
    for held in owners.values():
        if len(held) > 1:
            held.sort()
    return owners, keys, pid_netns, denied, vanished


def _start_ticks(proc: str, pid: str) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), None when the process is gone."""
    try:
        with open(os.path.join(proc, pid, "stat"), "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    text = raw.decode(errors="replace")
    close_at = text.rfind(")")  # comm may hold spaces and parentheses
    rest = text[close_at + 2 :].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def encode_tables(
    owners: Mapping[int, Sequence[K]],
    pid_netns: Mapping[N, int],
    denied_pids: int,
    vanished_pids: int,
) -> bytes:
    """The scan as bytes (the module docstring's wire format); ``fdscan.decode_scan`` reads it."""
    keys = sorted({k for ks in owners.values() for k in ks})
    index = {k: i for i, k in enumerate(keys)}
    key_words = array.array("q", [x for k in keys for x in k])
    pair_words = array.array(
        "q", [x for inode, ks in owners.items() for k in ks for x in (inode, index[k])]
    )
    ns_words = array.array("q", [x for ns, pid in pid_netns.items() for x in (ns[0], ns[1], pid)])
    head = HEADER.pack(
        denied_pids, vanished_pids, len(keys), len(pair_words) // 2, len(ns_words) // 3
    )
    return head + key_words.tobytes() + pair_words.tobytes() + ns_words.tobytes()


def fork_scan(
    proc: str = "/proc", *, netns: Collection[tuple[int, int]] | None = None
) -> tuple[int, int] | None:
    """Fork a child that walks ``proc`` (leaving itself out) and writes :func:`encode_tables` bytes
    to a pipe, then exits with 0 (1 on any failure, the pipe then closed early).

    Returns:
        ``(child pid, read end of the pipe)`` in the parent, at once; None when the pipe or the fork
        cannot be made (the caller scans in-process instead). The caller reads the pipe to its end
        and reaps the child (``fdscan.collect_forked``).
    """
    try:
        read_fd, write_fd = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return None
    if pid == 0:  # child: scan, write, leave without running any cleanup of the parent's state
        code = 1
        try:
            os.close(read_fd)
            owners, _keys, pid_netns, denied, vanished = scan_fd_tables(
                proc, skip_pid=os.getpid(), netns=netns, make_key=_pair, make_ns=_pair
            )
            view = memoryview(encode_tables(owners, pid_netns, denied, vanished))
            while view:
                view = view[os.write(write_fd, view) :]
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd
