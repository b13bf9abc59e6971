"""Probe targets: parse ``[SCHEME://][HOST][:PORT][/PATH]`` (pure) and list the addresses a local client
might use (reads interface addresses and resolves names)."""

from __future__ import annotations

import ipaddress
import socket

from loopscope.errors import UsageError
from loopscope.model import InterfaceAddress
from loopscope.model.probe import Candidate, ProbeTarget

__all__ = ["candidates_for", "local_candidates", "parse_target", "resolve_candidates"]

_SCHEMES = ("http", "https", "tcp")


def parse_target(spec: str | None) -> ProbeTarget:
    """Parse a probe target.

    Args:
        spec: ``""``, ``":8080"``, ``"8080"``, ``"localhost:8080/health"``, ``"[::1]:443"``,
            ``"https://127.0.0.1:8443/"``, ``"::1"``, ``"/health"``.

    Returns:
        The target; the port defaults to 443 for https and 80 otherwise.

    Raises:
        UsageError: unknown scheme, bad port, bad bracketed address.

    Example: ``parse_target("localhost:8080/health")`` ->
    ``ProbeTarget(host="localhost", port=8080, path="/health", scheme="auto")``.
    """
    rest = (spec or "").strip()
    scheme = "auto"
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        scheme = scheme.lower()
        if scheme not in _SCHEMES:
            raise UsageError(f"unknown scheme {scheme!r}: use http, https or tcp")
    path: str | None = None
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise UsageError(f"unclosed '[' in {spec!r}")
        host: str | None = rest[1:end]
        rest = rest[end + 1 :]
        if "/" in rest:
            rest, path = rest.split("/", 1)[0], "/" + rest.split("/", 1)[1]
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise UsageError(f"unexpected {rest!r} after ']' in {spec!r}")
    else:
        if "/" in rest:
            rest, tail = rest.split("/", 1)
            path = "/" + tail
        if rest.count(":") > 1:
            host, port_text = rest, ""  # a bare IPv6 address
        elif ":" in rest:
            host, port_text = rest.split(":", 1)
        elif rest.isdigit():
            host, port_text = None, rest
        else:
            host, port_text = rest, ""
    host = host or None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"bad port {port_text!r}: use 1-65535")
        port = int(port_text)
    else:
        port = 443 if scheme == "https" else 80
    if host is not None and host.count(":") > 1:
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise UsageError(f"bad IPv6 address {host!r}") from None
    return ProbeTarget(host=host, port=port, path=path, scheme=scheme)


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
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve {name!r}: {exc.strerror}") from exc
    out: list[Candidate] = []
    for i, (fam, _t, _p, _c, sockaddr) in enumerate(infos, 1):
        addr = str(sockaddr[0])
        if any(c.address == addr for c in out):
            continue
        out.append(
            Candidate(
                address=addr,
                label=f"{label_prefix or name} #{i}",
                family=6 if fam == socket.AF_INET6 else 4,
            )
        )
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
