"""Probe targets: parse ``[SCHEME://][HOST][:PORT][/PATH]`` into a :class:`ProbeTarget` (pure: text in,
value out; listing the addresses a target may reach is :mod:`loopscope.probes.target`)."""

from __future__ import annotations

import ipaddress

from loopscope.errors import UsageError
from loopscope.model.probe import ProbeTarget

__all__ = ["parse_target"]

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
        elif rest.isascii() and rest.isdigit():
            host, port_text = None, rest
        else:
            host, port_text = rest, ""
    host = host or None
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
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
