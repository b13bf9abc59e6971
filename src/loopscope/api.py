"""The Python API: five typed entry points over the library, re-exported as ``loopscope.<name>``.

Each is a thin function over what the CLI commands use: :class:`~loopscope.collect.Collector`
(``snapshot``), :func:`~loopscope.analysis.listeners.find_listeners` and
:func:`~loopscope.analysis.exposure.check_exposure` (``listeners``),
:func:`~loopscope.analysis.talkmap.build_talk_map` (``talk_map``),
:func:`~loopscope.doctor.runner.run_doctor` (``doctor``) and :func:`~loopscope.probes.run.run_probe`
(``probe``). The results are the library's frozen records; nothing is printed. Every import happens
inside the function that needs it, so ``import loopscope`` loads nothing but this module.

Example::

    import loopscope

    for row in loopscope.listeners():
        print(row.local, row.scope.value, row.process_names)
    report = loopscope.probe("127.0.0.1:8080/health")
    print(report.mode, [r.ok for r in report.results])

Errors are :class:`~loopscope.errors.LoopscopeError` subclasses: ``UsageError`` for a bad argument or an
unknown namespace, ``NetnsError`` when a namespace cannot be entered, ``BackendUnavailable`` when the
socket source asked for cannot work here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopscope.analysis.listeners import Listener
    from loopscope.analysis.talkmap import TalkMap
    from loopscope.doctor.runner import DoctorReport
    from loopscope.model import Snapshot
    from loopscope.probes.run import ProbeReport

__all__ = ["doctor", "listeners", "probe", "snapshot", "talk_map"]


def snapshot(
    netns: str | None = None,
    *,
    source: str = "auto",
    processes: bool = True,
    listening_only: bool = False,
    tcp_info: bool = False,
) -> Snapshot:
    """Every TCP and UDP socket of one network namespace, with owners, links, addresses and sysctls.

    Args:
        netns: None for this namespace; a ``/run/netns`` name, a pid or an nsfs path for another
            (entering one needs root).
        source: ``auto`` (netlink sock_diag, else /proc/net, else psutil), ``sock_diag``, ``procfs``
            or ``psutil``.
        processes: map sockets to processes (the /proc fd scan, ~90 ms at 18.5k sockets). Without
            root, other users' sockets keep ``owners=()`` and the snapshot carries a ``Gap``.
        listening_only: keep only listeners (TCP LISTEN, unconnected bound UDP): much cheaper.
        tcp_info: read ``struct tcp_info`` per TCP socket (sock_diag only).

    Returns:
        A :class:`~loopscope.model.Snapshot`: ``sockets`` (``SocketRecord``, queues in bytes, listener
        queues in connections), ``processes`` by ``ProcessKey``, ``taken_at_ns`` (Unix ns), ``gaps``.

    Raises:
        UsageError: unknown source or namespace.
        NetnsError: the namespace cannot be entered.
        BackendUnavailable: the forced source cannot work here.
    """
    from loopscope.collect import Collector, snapshot_options

    options = snapshot_options(
        attribute=processes, listening_only=listening_only, tcp_info=tcp_info
    )
    return Collector.for_source(source, **options).snapshot(netns)


def listeners(
    netns: str | None = None,
    *,
    source: str = "auto",
    processes: bool = True,
) -> list[Listener]:
    """Every listener of one namespace, what ``loopscope ports`` lists.

    Args:
        netns: as :func:`snapshot`.
        source: as :func:`snapshot`.
        processes: as :func:`snapshot` (owners of listeners).

    Returns:
        :class:`~loopscope.analysis.listeners.Listener` rows sorted by (port, proto, family, address):
        ``local`` endpoint, ``scope`` (loopback / wildcard / own-address / other), ``reach`` in words,
        ``accept_queue`` and ``backlog`` (connections), ``owners``, socket ``uid``. Judge exposure with
        :func:`loopscope.analysis.exposure.check_exposure` on the snapshot.

    Raises:
        UsageError, NetnsError, BackendUnavailable: as :func:`snapshot`.
    """
    from loopscope.analysis.listeners import find_listeners

    return find_listeners(snapshot(netns, source=source, processes=processes, listening_only=True))


def talk_map(
    netns: str | None = None,
    *,
    source: str = "auto",
    processes: bool = True,
) -> TalkMap:
    """Who talks to whom over loopback in one namespace, what ``loopscope map`` shows.

    Args:
        netns: as :func:`snapshot`.
        source: as :func:`snapshot`.
        processes: as :func:`snapshot`; without owners, clients and servers are ``?``.

    Returns:
        A :class:`~loopscope.analysis.talkmap.TalkMap`: ``edges`` (client app -> server app and port,
        ``connections`` count, ``self_call``), every paired ``connections`` row, ``unpaired`` count,
        ``ephemeral_in_use`` per listener.

    Raises:
        UsageError, NetnsError, BackendUnavailable: as :func:`snapshot`.
    """
    from loopscope.analysis.talkmap import build_talk_map

    return build_talk_map(snapshot(netns, source=source, processes=processes))


def doctor(
    netns: str | None = None,
    *,
    all_netns: bool = False,
    rung: int = 2,
    external: str | None = None,
    firewall: bool = True,
    processes: bool = True,
    hosts_file: str | None = None,
) -> DoctorReport:
    """Is loopback healthy here? The ``loopscope doctor`` ladder (it sends probes over loopback).

    Args:
        netns: as :func:`snapshot`.
        all_netns: run the ladder in every distinct namespace instead.
        rung: highest rung: 1 loopback stack, 2 local network.
        external: ``HOST:PORT`` (``[V6]:PORT``): adds rung 3, resolve and TCP-connect it.
        firewall: read the nft / iptables rulesets (root).
        processes: name listener owners (the /proc fd scan).
        hosts_file: hosts file to judge instead of the namespace's own.

    Returns:
        A :class:`~loopscope.doctor.runner.DoctorReport`: one ``NamespaceReport`` per namespace with its
        ``rungs`` (each ``verdict`` ok / warn / fail / skipped and its ``checks``: evidence, remedy,
        code, ``data`` numbers in µs), ``findings`` and ``gaps``.

    Raises:
        UsageError: ``rung`` not 1-3, a bad ``external``, ``netns`` with ``all_netns``, an unknown
            namespace.
        NetnsError: the namespace cannot be entered.
    """
    from loopscope.doctor.gather import DoctorOptions
    from loopscope.doctor.runner import parse_external, run_doctor
    from loopscope.errors import UsageError

    if rung not in (1, 2, 3):
        raise UsageError(f"rung must be 1, 2 or 3, not {rung!r}")
    opts = DoctorOptions(
        max_rung=rung,
        external=parse_external(external) if external else None,
        firewall=firewall,
        attribute=processes,
        hosts_path=hosts_file,
    )
    return run_doctor(netns, all_netns, opts)


def probe(
    target: str = "",
    *,
    count: int = 1,
    timeout_s: float = 2.0,
    diagnose: bool = True,
    fingerprint: bool = True,
) -> ProbeReport:
    """Try a local service on every address a client might use, as ``loopscope probe`` does.

    Args:
        target: ``[SCHEME://][HOST][:PORT][/PATH]``: ``":8080"``, ``"localhost:8080/health"``,
            ``"https://[::1]:8443/"``; without a host, 127.0.0.1, ::1, each host address and
            ``localhost`` are tried.
        count: tries per address, 1-10000 (p50/p99 need several).
        timeout_s: per-phase timeout (connect, TLS, request), seconds, in (0, 60].
        diagnose: on failure, read the listener table and firewall to say why.
        fingerprint: in tcp mode, identify the service that answers.

    Returns:
        A :class:`~loopscope.probes.run.ProbeReport`: ``mode`` (tcp / http / https), one
        ``AddressResult`` per address (``ok``, ``attempts`` with per-phase times in seconds),
        ``findings``, ``fingerprint``, ``elapsed_s``.

    Raises:
        UsageError: a bad target, count or timeout; a host that does not resolve.
    """
    from loopscope.analysis.probe.target import parse_target
    from loopscope.errors import UsageError
    from loopscope.probes.run import run_probe

    if not 1 <= count <= 10000:
        raise UsageError(f"count {count} out of range 1-10000")
    if not 0 < timeout_s <= 60:
        raise UsageError(f"timeout_s {timeout_s} out of range (0, 60]")
    return run_probe(
        parse_target(target),
        count=count,
        timeout_s=timeout_s,
        diagnose_failures=diagnose,
        fingerprint=fingerprint,
    )
