"""Exposure verified from outside (root): a throwaway network namespace joined to the host by a veth
pair plays "another host"; from there, connect to every TCP listener and report what is really reachable,
firewall included.

Layout (names unique per run, addresses chosen not to overlap anything configured on the host)::

    host netns                              lsx-<pid>-<id> netns (created here, deleted afterwards)
    lsxh<id>  169.254.X.1/30, fdXX::1/64 <-> lsxp<id>  169.254.X.2/30, fdXX::2/64, default routes via .1 / ::1

Targets: a wildcard listener is tried on the host's veth address of its family (both families for
``[::]`` without IPV6_V6ONLY); a listener on one host address is tried on that address (routed over the
veth); a loopback listener is tried on the veth address (it must be refused: proof it is not exposed).
Everything created is removed in ``finally``; SIGINT/SIGTERM are turned into KeyboardInterrupt while it
runs so Ctrl-C cleans up too.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from loopscope.analysis.listeners import Listener
from loopscope.analysis.scope import unmap
from loopscope.errors import BackendUnavailable
from loopscope.model import Proto
from loopscope.model.probe import ExposureResult
from loopscope.probes.connect import connect_tcp, describe_error

__all__ = [
    "OutsideView",
    "outside_netns",
    "pick_link_net",
    "remove_stale_outside_netns",
    "verify_exposure",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class OutsideView:
    """The throwaway "other host"."""

    netns: str
    """/run/netns name."""
    host_if: str
    """Host end of the veth pair."""
    host_v4: str
    """Host veth IPv4 address."""
    host_v6: str | None
    """Host veth IPv6 address (None when IPv6 is off)."""


def pick_link_net(
    used: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> ipaddress.IPv4Network:
    """A 169.254.X.Y/30 that overlaps none of ``used`` (pure; random start, deterministic scan).

    Example: ``pick_link_net([]).prefixlen == 30``.
    """
    start = secrets.randbelow(200) + 20
    for i in range(250):
        third = (start + i) % 250 + 1
        net = ipaddress.IPv4Network(f"169.254.{third}.{4 * secrets.randbelow(60)}/30")
        if not any(net.overlaps(u) for u in used if u.version == 4):
            return net
    raise BackendUnavailable("no free 169.254.0.0/16 /30 for the veth pair")


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15, check=False)
    if proc.returncode != 0:
        raise BackendUnavailable(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")


@contextmanager
def _interrupts_raise() -> Iterator[None]:
    """SIGINT/SIGTERM -> KeyboardInterrupt while the body runs (main thread only), so finally runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


_STALE_NAME = re.compile(r"lsx-(\d+)-[0-9a-f]{8}")


def remove_stale_outside_netns(run_dir: str = "/run/netns") -> list[str]:
    """Delete the ``lsx-<pid>-<tag>`` namespaces whose creator is dead (a SIGKILLed
    ``--verify-exposure`` cannot run its ``finally``); deleting one removes its veth pair too.

    Namespaces of a live creator, and names without a pid (older runs: their creator is unknown),
    are left alone.

    Returns:
        The names deleted.
    """
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        return []
    removed = []
    for name in sorted(names):
        m = _STALE_NAME.fullmatch(name)
        if m is None or _alive(int(m.group(1))):
            continue
        proc = subprocess.run(
            ["ip", "netns", "del", name], capture_output=True, timeout=15, check=False
        )
        if proc.returncode == 0:
            removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


@contextmanager
def outside_netns() -> Iterator[OutsideView]:
    """Create the netns + veth pair, yield it, and always delete both.

    Raises:
        BackendUnavailable: not root, or ``ip`` failed.
    """
    if os.geteuid() != 0:
        raise BackendUnavailable(
            "--verify-exposure needs root (it creates a network namespace and a veth pair)"
        )
    from loopscope.backends.linux.rtnl import read_addresses

    used = [
        ipaddress.ip_network(f"{a.address}/{a.prefixlen}", strict=False)
        for a in read_addresses()[1]
    ]
    net = pick_link_net(used)
    v4_host, v4_peer = (str(h) for h in list(net.hosts())[:2])
    tag = secrets.token_hex(4)
    remove_stale_outside_netns()
    ns, host_if, peer_if = f"lsx-{os.getpid()}-{tag}", f"lsxh{tag}", f"lsxp{tag}"
    v6_net = ipaddress.IPv6Network(
        f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}::/64"
    )
    v6_host, v6_peer = str(v6_net[1]), str(v6_net[2])
    created_ns = False
    try:
        _ip("netns", "add", ns)
        created_ns = True
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if, "netns", ns)
        _ip("addr", "add", f"{v4_host}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{v4_peer}/30", "dev", peer_if)
        _ip("-n", ns, "link", "set", peer_if, "up")
        _ip("-n", ns, "route", "add", "default", "via", v4_host)
        have_v6: str | None = v6_host
        try:
            _ip("addr", "add", f"{v6_host}/64", "dev", host_if, "nodad")
            _ip("-n", ns, "addr", "add", f"{v6_peer}/64", "dev", peer_if, "nodad")
            _ip("-n", ns, "-6", "route", "add", "default", "via", v6_host)
        except BackendUnavailable:
            have_v6 = None  # IPv6 disabled on the host: IPv6 listeners are reported as not tested
        yield OutsideView(netns=ns, host_if=host_if, host_v4=v4_host, host_v6=have_v6)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=15, check=False)
        if created_ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=15, check=False)


def _targets(li: Listener, view: OutsideView) -> list[tuple[str | None, str]]:
    """(address to connect to, or None with a reason) for one listener."""
    bind = unmap(li.local.address)
    if int(bind) == 0:
        if bind.version == 4:
            return [(view.host_v4, "")]
        out: list[tuple[str | None, str]] = [(view.host_v6, "IPv6 off on the veth")]
        if li.v6only is not True:
            out.append((view.host_v4, ""))
        return out
    if bind.is_loopback:
        return [(view.host_v4 if bind.version == 4 else view.host_v6, "IPv6 off on the veth")]
    if bind.version == 6 and (bind.is_link_local or view.host_v6 is None):
        return [(None, "link-local or IPv6 off")]
    return [(str(bind), "")]


def _try(target: str, port: int, timeout_s: float) -> tuple[bool, str, float | None]:
    try:
        sock, elapsed = connect_tcp(target, port, timeout_s)
    except OSError as exc:
        err = describe_error(exc)
        word = {
            "ECONNREFUSED": "refused",
            "ETIMEDOUT": "timeout",
            "EHOSTUNREACH": "unreachable",
            "ENETUNREACH": "unreachable",
        }.get(err, err)
        return False, word, None
    sock.close()
    return True, "connected", elapsed


def verify_exposure(
    listeners: Sequence[Listener], *, timeout_s: float = 1.0
) -> list[ExposureResult]:
    """Connect to each TCP listener from a throwaway netns behind a veth pair (root).

    Args:
        listeners: rows of :func:`loopscope.analysis.listeners.find_listeners` for the host namespace
            (UDP rows are returned as not tested).
        timeout_s: connect timeout, seconds; a firewall that drops costs one timeout (connects run in
            parallel).

    Returns:
        One result per (listener, target address), in input order. A timeout is explained by the
        host's firewall rule when one matches (``firewall``).

    Raises:
        BackendUnavailable: not root, or the namespace/veth could not be made.
    """
    from loopscope.analysis.firewall.evaluate import Packet, evaluate
    from loopscope.analysis.firewall.parse import parse_firewall_facts
    from loopscope.backends.linux.firewall import read_firewall
    from loopscope.backends.linux.netns import resolve_netns, run_in_netns

    ruleset, _unread = parse_firewall_facts(read_firewall())
    results: list[ExposureResult] = []
    with _interrupts_raise(), outside_netns() as view:
        real: list[tuple[Listener, str | None, str]] = []
        for li in listeners:
            if li.proto is not Proto.TCP:
                real.append((li, None, "udp: no handshake to test"))
            else:
                real += [(li, t, w) for t, w in _targets(li, view)]

        def run_all() -> list[tuple[bool, str, float | None] | None]:
            with ThreadPoolExecutor(max_workers=max(1, min(32, len(real)))) as pool:
                futs = [
                    pool.submit(_try, t, li.local.port, timeout_s) if t else None
                    for li, t, _ in real
                ]
                return [f.result() if f else None for f in futs]

        outcomes = run_in_netns(resolve_netns(view.netns), run_all)
        for (li, target, why), got in zip(real, outcomes, strict=False):
            if got is None or target is None:
                results.append(
                    ExposureResult(
                        proto=li.proto.value,
                        bind=str(li.local),
                        port=li.local.port,
                        target=target or "-",
                        reachable=None,
                        outcome=f"not tested: {why}",
                    )
                )
                continue
            ok, word, elapsed = got
            fw = None
            if word == "timeout" and ruleset is not None:
                v = evaluate(
                    ruleset,
                    Packet(
                        proto="tcp",
                        version=ipaddress.ip_address(target).version,
                        daddr=target,
                        dport=li.local.port,
                        saddr=None,
                        iif=view.host_if,
                    ),
                )
                fw = v.evidence if v.blocked or v.possible else None
            results.append(
                ExposureResult(
                    proto="tcp",
                    bind=str(li.local),
                    port=li.local.port,
                    target=target,
                    reachable=ok,
                    outcome=word,
                    connect_s=elapsed,
                    firewall=fw,
                )
            )
    return results
