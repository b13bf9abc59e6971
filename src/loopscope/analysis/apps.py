"""The one definition of an **app**, its identity and its label (pure).

An app is the set of processes that own a listener: prefork/gunicorn workers inherit the listening socket
from their master, nginx master and workers share theirs, so all of them are one app. Listeners whose
owner sets share a process are one app too (nginx on :80 and :443). A client process that owns no
listener is grouped by its **name** within the namespace: its ``comm`` (the processes' names, joined by
``/`` when a socket is shared), so 300 short-lived ``curl`` processes are one client app
``curl (300 processes)`` whose pids the caller keeps alongside (``client_pids`` of an edge). Every command that names apps (``map``, ``scan``,
``ports``, ``watch``) takes the identity from :class:`AppKey` and the text from :func:`app_label`.

A client **belongs** to an app (:func:`is_same_app`) when it is one of the owners, is in a process group
led by one of them (a master's helper processes), or shares their systemd service cgroup
(``*.service``). A process group led by something else (a shell script, a test runner that started both
client and server) does not make two processes one app.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from loopscope.model import NetnsId, ProcessInfo, ProcessKey

__all__ = [
    "EXTERNAL_APP",
    "LABEL_MAX_PIDS",
    "UNKNOWN_APP",
    "App",
    "AppKey",
    "app_label",
    "client_app",
    "client_group_label",
    "find_apps",
    "is_same_app",
    "process_app",
    "process_label",
]

LABEL_MAX_PIDS = 2
"""Pids shown in a label before ``,...``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AppKey:
    """Identity of an app (hashable; compare keys, never labels).

    Exactly one of ``processes``, ``comm``, ``pid``, ``ports``, ``external`` is set, or none for an
    unknown client.

    Example: gunicorn master 100 and workers 101, 102 sharing ``0.0.0.0:8000`` ->
    ``AppKey(netns=None, processes=(ProcessKey(100, t0), ProcessKey(101, t1), ProcessKey(102, t2)))``.
    """

    netns: NetnsId | None = None
    """Network namespace the app was seen in; None when the caller looks at one namespace only."""
    processes: tuple[ProcessKey, ...] = ()
    """Sorted keys of the listener owners (a server app), or of a client socket's owners when none of
    them belongs to an app."""
    comm: str | None = None
    """A client that owns no listener, by name: the distinct ``comm`` of its processes sorted and joined
    by ``/`` (``curl``; ``bash/curl`` for a socket two processes share). Every process of that name in
    the namespace is this one client app; the pids are kept by the caller (an edge's ``client_pids``)."""
    pid: int | None = None
    """A client known by pid only (eBPF saw it; it exited before ``/proc/PID`` was read)."""
    ports: tuple[int, ...] = ()
    """Sorted listening ports of a listener no known process owns (other users without root)."""
    external: bool = False
    """A client on another host (not a local process)."""


UNKNOWN_APP = AppKey()
"""A client nobody is known to own (TIME_WAIT, other users' processes without root)."""
EXTERNAL_APP = AppKey(external=True)
"""Any client on another host."""


def process_label(processes: Iterable[ProcessInfo], *, max_pids: int = LABEL_MAX_PIDS) -> str:
    """``comm[pid,...]`` of a set of processes; ``?`` when empty.

    Names are the distinct ``comm`` sorted and joined by ``/``; pids sorted, the first ``max_pids`` shown.

    Example: gunicorn 10 and 11 -> ``gunicorn[10,11]``; three workers -> ``gunicorn[10,11,...]``;
    nginx 5 and python 7 -> ``nginx/python[5,7]``.
    """
    procs = list(processes)
    if not procs:
        return "?"
    names = sorted({p.comm for p in procs})
    pids = sorted({p.pid for p in procs})
    shown = ",".join(str(p) for p in pids[:max_pids]) + (",..." if len(pids) > max_pids else "")
    return f"{'/'.join(names)}[{shown}]"


def client_group_label(comm: str, pids: Iterable[int]) -> str:
    """The label of a client app grouped by name: ``comm[pid]`` for one process, ``comm (N processes)``
    for more, ``comm`` when no pid is known.

    Example: ``client_group_label("curl", [15437]) == "curl[15437]"``;
    ``client_group_label("curl", range(300)) == "curl (300 processes)"``.
    """
    distinct = sorted(set(pids))
    if not distinct:
        return comm
    if len(distinct) == 1:
        return f"{comm}[{distinct[0]}]"
    return f"{comm} ({len(distinct)} processes)"


def app_label(
    key: AppKey, processes: Iterable[ProcessInfo] = (), *, pids: Iterable[int] | None = None
) -> str:
    """The text shown for an app: ``comm[pid,...]`` (:func:`process_label`), ``comm (N processes)`` for
    a client grouped by name (:func:`client_group_label`, over ``pids`` when given, else over the pids
    of ``processes``), ``external``, ``pid N`` for a client known by pid only, ``?`` when nobody is
    known to own it.

    Example: ``app_label(EXTERNAL_APP) == "external"``; ``app_label(AppKey(pid=42)) == "pid 42"``;
    ``app_label(AppKey(comm="curl"), pids=[1, 2, 3]) == "curl (3 processes)"``.
    """
    if key.external:
        return "external"
    procs = list(processes)
    if key.comm is not None:
        return client_group_label(key.comm, pids if pids is not None else (p.pid for p in procs))
    if procs:
        return process_label(procs)
    if key.pid is not None:
        return f"pid {key.pid}"
    return "?"


@dataclass(frozen=True, slots=True, kw_only=True)
class App:
    """An app: its identity, its processes and its listening ports."""

    key: AppKey
    """Identity."""
    processes: tuple[ProcessInfo, ...] = ()
    """Listener owners (or the client's processes), by pid."""
    ports: tuple[int, ...] = ()
    """Listening ports, sorted; empty for a client that owns no listener."""

    @property
    def label(self) -> str:
        """``comm[pid,...]`` and the other forms of :func:`app_label`."""
        return app_label(self.key, self.processes)

    @property
    def pids(self) -> tuple[int, ...]:
        """Pids of the processes, sorted."""
        return tuple(sorted({p.pid for p in self.processes}))


def _service_cgroup(proc: ProcessInfo) -> str | None:
    if proc.cgroup and proc.cgroup.rstrip("/").endswith(".service"):
        return proc.cgroup.rstrip("/")
    return None


def is_same_app(client: ProcessInfo, owners: Sequence[ProcessInfo]) -> bool:
    """True when ``client`` belongs to the app made of ``owners``: one of them, in a process group led by
    one of them, or in the same systemd service cgroup."""
    owner_pids = {o.pid for o in owners}
    service = _service_cgroup(client)
    for owner in owners:
        if client.key == owner.key:
            return True
        if client.pgid is not None and client.pgid in owner_pids and client.netns == owner.netns:
            return True
        if service is not None and service == _service_cgroup(owner):
            return True
    return False


def find_apps(
    listeners: Iterable[tuple[Sequence[ProcessInfo], int]], *, netns: NetnsId | None = None
) -> list[App]:
    """Group listeners into apps.

    Args:
        listeners: ``(owners, port)`` per listener (the same listener may come several times, e.g. once
            per snapshot).
        netns: namespace of the listeners, stored in each key.

    Returns:
        Apps sorted by ports. Listeners whose owner sets share a process merge; listeners with no known
        owner make one app per port (none when the port has a known owner elsewhere in ``listeners``).

    Example: ``[((master, w1), 8000), ((master, w2), 8000), ((nginx,), 80)]`` -> two apps:
    ``gunicorn[100,101,...]`` on (8000,) and ``nginx[200]`` on (80,).
    """
    groups: list[tuple[dict[ProcessKey, ProcessInfo], set[int]]] = []
    unowned: set[int] = set()
    for owners, port in listeners:
        if not owners:
            unowned.add(port)
            continue
        keys = {p.key for p in owners}
        match = [g for g in groups if keys & g[0].keys()]
        if match:
            base = match[0]
            for other in match[1:]:
                base[0].update(other[0])
                base[1].update(other[1])
                groups.remove(other)
        else:
            base = ({}, set())
            groups.append(base)
        base[0].update({p.key: p for p in owners})
        base[1].add(port)
    apps = [
        App(
            key=AppKey(netns=netns, processes=tuple(sorted(procs))),
            processes=tuple(procs[k] for k in sorted(procs)),
            ports=tuple(sorted(ports)),
        )
        for procs, ports in groups
    ]
    owned_ports = {p for _, ports in groups for p in ports}
    apps += [
        App(key=AppKey(netns=netns, ports=(port,)), ports=(port,))
        for port in sorted(unowned)
        if port not in owned_ports  # seen with its owners in another snapshot
    ]
    apps.sort(key=lambda a: a.ports)
    return apps


def process_app(owners: Sequence[ProcessInfo], *, netns: NetnsId | None = None) -> App:
    """The app made of exactly ``owners``, keyed by their process keys (an accepting process whose
    listener is gone; a server side is never grouped by name).

    Example: ``process_app([python 7])`` -> ``App(key=AppKey(processes=(ProcessKey(7, t),)), ...)``.
    """
    by_key = {p.key: p for p in owners}
    return App(
        key=AppKey(netns=netns, processes=tuple(sorted(by_key))),
        processes=tuple(by_key[k] for k in sorted(by_key)),
    )


def client_app(
    owners: Sequence[ProcessInfo],
    apps: Sequence[App],
    *,
    server: App | None = None,
    pid: int | None = None,
    comm: str | None = None,
    netns: NetnsId | None = None,
) -> App:
    """The app a local client belongs to.

    Args:
        owners: processes holding the client socket (may be empty).
        apps: the listener apps (:func:`find_apps`).
        server: the app it connects to; when the client belongs to it, that app wins (a self-call) even
            if the client also belongs to another app (two apps in one service cgroup).
        pid: client pid when ``owners`` is empty (eBPF saw the connect, ``/proc`` was not read).
        comm: client name captured at connect time (eBPF ``bpf_get_current_comm``), used when
            ``owners`` is empty.
        netns: namespace stored in a key made here.

    Returns:
        The listener app it belongs to (:func:`is_same_app`, or its pid is an owner's); else the client
        app of its name (``AppKey(comm=...)``: the owners' distinct ``comm`` joined by ``/``, or
        ``comm``), ``pid N`` when only the pid is known, or :data:`UNKNOWN_APP`.

    Example: two short-lived ``curl`` processes 10 and 11 calling nginx -> the same
    ``App(key=AppKey(comm="curl"))`` for both.
    """

    def belongs(app: App) -> bool:
        if not app.processes:
            return False
        if not owners:
            return pid is not None and pid in app.pids
        return any(is_same_app(o, app.processes) for o in owners)

    if server is not None and belongs(server):
        return server
    found = next((a for a in apps if belongs(a)), None)
    if found is not None:
        return found
    if owners:
        by_key = {p.key: p for p in owners}
        name = "/".join(sorted({p.comm for p in owners}))
        return App(
            key=AppKey(netns=netns, comm=name),
            processes=tuple(by_key[k] for k in sorted(by_key)),
        )
    if comm:
        return App(key=AppKey(netns=netns, comm=comm))
    if pid is not None:
        return App(key=AppKey(netns=netns, pid=pid))
    return App(key=UNKNOWN_APP)
