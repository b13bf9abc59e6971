"""Network namespaces: name them, find them, and run code inside one.

setns(2) changes the namespace of the calling *thread* only, so :func:`run_in_netns` runs the work in a
dedicated short-lived thread that enters the namespace, does the work (typically: opens a netlink
socket, which stays bound to that namespace, and dumps), and returns to the original namespace before
the thread ends. Python 3.12 has ``os.setns``; on 3.10/3.11 libc's ``setns`` is called through ctypes.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from loopscope.errors import NetnsError, UsageError
from loopscope.model import NetnsId

__all__ = [
    "CLONE_NEWNET",
    "NetnsTarget",
    "current_netns",
    "list_netns",
    "netns_id_of",
    "resolve_netns",
    "run_in_netns",
]

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class NetnsTarget:
    """A network namespace to read: the nsfs file to open and a label for people."""

    path: str
    """``/run/netns/NAME``, ``/proc/PID/ns/net`` or ``/proc/self/ns/net``."""
    label: str
    """``host``, the /run/netns name, or ``pid 1234``."""
    id: NetnsId
    """(st_dev, st_ino) of ``path``."""

    @property
    def is_current(self) -> bool:
        """True when this is the calling process's own namespace."""
        return self.id == current_netns()


def netns_id_of(path: str) -> NetnsId:
    """``(st_dev, st_ino)`` of an nsfs file.

    Raises:
        OSError: the file cannot be stat'ed.
    """
    st = os.stat(path)
    return NetnsId(st.st_dev, st.st_ino)


def current_netns() -> NetnsId:
    """The calling process's network namespace (``/proc/self/ns/net``)."""
    return netns_id_of("/proc/self/ns/net")


def _named() -> dict[NetnsId, str]:
    names: dict[NetnsId, str] = {}
    try:
        entries = sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return names
    for name in entries:
        try:
            names.setdefault(netns_id_of(os.path.join(NETNS_RUN_DIR, name)), name)
        except OSError:
            continue  # a stale mount point: ip netns left a file that is no longer a namespace
    return names


def resolve_netns(spec: str | None) -> NetnsTarget:
    """Turn ``None`` (this namespace), ``NAME`` (/run/netns/NAME), ``PID`` or a path into a target.

    Raises:
        UsageError: no such namespace name or pid, or the path is not a namespace file.
    """
    if spec is None or spec in ("", "host", "self"):
        ident = current_netns()
        return NetnsTarget(path="/proc/self/ns/net", label="host", id=ident)
    if spec.isdigit():
        path = f"/proc/{spec}/ns/net"
        label = f"pid {spec}"
    elif spec.startswith("/"):
        path, label = spec, spec
        parts = spec.strip("/").split("/")
        if spec.startswith(NETNS_RUN_DIR + "/") and len(parts) == 3:
            label = parts[2]
        elif (
            len(parts) == 4
            and parts[0] == "proc"
            and parts[1].isdigit()
            and parts[2:] == ["ns", "net"]
        ):
            label = f"pid {parts[1]}"
    else:
        if "/" in spec or spec in (".", ".."):
            raise UsageError(f"bad netns name {spec!r}")
        path, label = os.path.join(NETNS_RUN_DIR, spec), spec
    try:
        ident = netns_id_of(path)
    except FileNotFoundError:
        raise UsageError(f"no network namespace {spec!r} (looked at {path})") from None
    except PermissionError:
        raise UsageError(
            f"no permission to open network namespace {spec!r} ({path}): run as root"
        ) from None
    if ident == current_netns():
        label = "host" if not spec.isdigit() or spec == str(os.getpid()) else label
    return NetnsTarget(path=path, label=label, id=ident)


def list_netns(pid_namespaces: dict[NetnsId, int] | None = None) -> list[NetnsTarget]:
    """Every distinct namespace: this one first, then named ones (/run/netns), then those only seen
    through a process (``pid_namespaces``: namespace -> one pid inside it, from the /proc scan).
    """
    me = current_netns()
    targets = [NetnsTarget(path="/proc/self/ns/net", label="host", id=me)]
    seen = {me}
    for ident, name in _named().items():
        if ident not in seen:
            seen.add(ident)
            targets.append(
                NetnsTarget(path=os.path.join(NETNS_RUN_DIR, name), label=name, id=ident)
            )
    for ident, pid in sorted((pid_namespaces or {}).items(), key=lambda kv: kv[1]):
        if ident not in seen:
            seen.add(ident)
            targets.append(NetnsTarget(path=f"/proc/{pid}/ns/net", label=f"pid {pid}", id=ident))
    return targets


def _libc_setns() -> Callable[[int, int], None]:
    setns = getattr(os, "setns", None)
    if setns is not None:
        return setns  # type: ignore[no-any-return]
    import ctypes  # here, not at the top: ctypes.util imports subprocess (~10 ms at start-up)
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def _setns(fd: int, nstype: int) -> None:
        if libc.setns(fd, nstype) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return _setns


def run_in_netns(target: NetnsTarget, fn: Callable[[], T]) -> T:
    """Call ``fn()`` with the calling context inside ``target``'s network namespace.

    The current namespace runs ``fn`` directly. Another one: a new thread setns()es into it, calls ``fn``,
    and setns()es back; exceptions from ``fn`` are re-raised here.

    Raises:
        NetnsError: the namespace cannot be entered (EPERM without CAP_SYS_ADMIN, or it vanished).
    """
    if target.is_current:
        return fn()
    setns = _libc_setns()
    result: list[T] = []
    failure: list[BaseException] = []

    def worker() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        except OSError as exc:
            failure.append(NetnsError(f"cannot open own namespace: {exc}"))
            return
        try:
            try:
                fd = os.open(target.path, os.O_RDONLY)
            except OSError as exc:
                failure.append(
                    NetnsError(f"cannot open network namespace {target.label}: {exc.strerror}")
                )
                return
            try:
                setns(fd, CLONE_NEWNET)
            except OSError as exc:
                hint = ": run as root" if exc.errno == errno.EPERM else ""
                failure.append(
                    NetnsError(
                        f"cannot enter network namespace {target.label}: {exc.strerror}{hint}"
                    )
                )
                return
            finally:
                os.close(fd)
            try:
                result.append(fn())
            except BaseException as exc:  # re-raised in the caller's thread below
                failure.append(exc)
            finally:
                setns(own, CLONE_NEWNET)
        finally:
            os.close(own)

    thread = threading.Thread(target=worker, name=f"netns-{target.label}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]
