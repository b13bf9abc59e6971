"""Probe target addresses: list the addresses a local client might use for a target (reads interface
addresses through rtnetlink and resolves names with getaddrinfo). Parsing the target text is pure and
lives in :mod:`loopscope.analysis.probe.target`."""

from __future__ import annotations

import ipaddress

from loopscope.backends.resolve import resolve_stream
from loopscope.errors import ProbeError, UsageError
from loopscope.model import InterfaceAddress
from loopscope.model.probe import Candidate, ProbeTarget

__all__ = ["candidates_for", "local_candidates", "resolve_candidates"]


def _merge(out: list[Candidate], cand: Candidate) -> None:
    for i, have in enumerate(out):
        if have.address == cand.address:
            out[i] = Candidate(
                address=have.address, label=f"{have.label} ({cand.label})", family=have.family
            )
            return
    out.append(cand)


def resolve_candidates(name: str, port: int, label_prefix: str | None = None) -> list[Candidate]:
    """Addresses of ``name`` in getaddrinfo order (TCP), labelled ``name #1``, ``name #2``...

    Raises:
        UsageError: the name does not resolve.
    """
    try:
        answers = resolve_stream(name, port)
    except ProbeError as exc:
        raise UsageError(f"cannot resolve {name!r}: {exc.reason}") from exc
    out: list[Candidate] = []
    for i, (version, addr) in enumerate(answers, 1):
        if any(c.address == addr for c in out):
            continue
        out.append(Candidate(address=addr, label=f"{label_prefix or name} #{i}", family=version))
    return out


def local_candidates(port: int, addresses: list[InterfaceAddress] | None = None) -> list[Candidate]:
    """127.0.0.1, ::1, each non-loopback host address, then ``localhost`` in getaddrinfo order,
    merged by address (``127.0.0.1 (localhost #2)``).

    Args:
        port: the port (for getaddrinfo).
        addresses: interface addresses; None reads them through rtnetlink. IPv6 link-local addresses
            are left out (they need a scope id).
    """
    if addresses is None:
        from loopscope.backends.linux.rtnl import read_addresses

        addresses = read_addresses()[1]
    out: list[Candidate] = [
        Candidate(address="127.0.0.1", label="127.0.0.1", family=4),
        Candidate(address="::1", label="::1", family=6),
    ]
    for ia in addresses:
        addr = ia.address
        if addr.is_loopback or (addr.version == 6 and addr.is_link_local):
            continue
        _merge(out, Candidate(address=str(addr), label=f"host {ia.interface}", family=addr.version))
    try:
        for cand in resolve_candidates("localhost", port):
            _merge(out, cand)
    except UsageError:
        pass  # "localhost" not resolving is itself shown by the doctor; probe keeps the literal addresses
    return out


def candidates_for(
    target: ProbeTarget, addresses: list[InterfaceAddress] | None = None
) -> list[Candidate]:
    """The candidates of a target: every local address when no host is given, the literal, or the
    resolved name.

    Raises:
        UsageError: the host does not resolve.
    """
    if target.host is None:
        return local_candidates(target.port, addresses)
    try:
        ip = ipaddress.ip_address(target.host.split("%")[0])
    except ValueError:
        return resolve_candidates(target.host, target.port)
    return [Candidate(address=target.host, label=target.host, family=ip.version)]
