"""Span attributes -> the fields of a SpanRecord (pure: values in, values out).

OpenTelemetry's HTTP semantic conventions changed names in 2023 (``http.method`` -> ``http.request.method``,
``net.peer.port`` -> ``server.port``...); instrumentations emit the old, the new or both
(``OTEL_SEMCONV_STABILITY_OPT_IN``), so both are read, the stable name first.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from loopscope.model.spans import SpanKind

__all__ = ["WANTED", "http_fields", "to_port"]

WANTED = frozenset(
    {
        "http.route",
        "http.request.method",
        "http.method",
        "url.full",
        "http.url",
        "url.path",
        "url.query",
        "http.target",
        "server.address",
        "server.port",
        "net.peer.name",
        "net.peer.port",
        "net.host.port",
        "network.peer.address",
        "network.peer.port",
        "http.host",
    }
)
"""The only attribute keys read; readers skip every other key without decoding its value."""

_DEFAULT_PORT = {"http": 80, "https": 443}


def to_port(value: object) -> int | None:
    """A TCP port from an attribute value (int or numeric string); None when absent or out of range.

    Example: ``to_port("8000") == 8000``; ``to_port("x") is None``; ``to_port(70000) is None``.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        port = value
    elif isinstance(value, str) and value.isdigit():
        port = int(value)
    else:
        return None
    return port if 0 < port < 65536 else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def http_fields(
    kind: SpanKind, attrs: Mapping[str, object]
) -> tuple[str | None, str | None, str | None, str | None, int | None, int | None]:
    """(route, method, target, peer_address, peer_port, local_port) from a span's attributes.

    Client spans take the peer from ``server.address``/``server.port`` (or ``net.peer.*``, or the URL);
    server spans take their local port from ``server.port`` or ``net.host.port``.

    Example: a CLIENT span with ``{"http.method": "GET", "http.url": "http://127.0.0.1:8000/price?q=1"}``
    -> ``(None, "GET", "/price?q=1", "127.0.0.1", 8000, None)``.
    """
    route = _str(attrs.get("http.route"))
    method = _str(attrs.get("http.request.method")) or _str(attrs.get("http.method"))
    url = _str(attrs.get("url.full")) or _str(attrs.get("http.url"))
    target = _str(attrs.get("http.target"))
    if target is None and (path := _str(attrs.get("url.path"))):
        query = _str(attrs.get("url.query"))
        target = f"{path}?{query}" if query else path
    url_host: str | None = None
    url_port: int | None = None
    if url:
        try:
            parts = urlsplit(url)
            url_host = parts.hostname
            url_port = parts.port or _DEFAULT_PORT.get(parts.scheme)
            if target is None:
                target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        except ValueError:  # a malformed URL (bad port, bad IPv6 literal): keep what else we have
            url_host = url_port = None
    peer_address: str | None = None
    peer_port: int | None = None
    local_port: int | None = None
    if kind is SpanKind.SERVER:
        local_port = to_port(attrs.get("server.port")) or to_port(attrs.get("net.host.port"))
        if local_port is None and (host := _str(attrs.get("http.host"))) and ":" in host:
            local_port = to_port(host.rsplit(":", 1)[1])
    else:
        peer_address = (
            _str(attrs.get("server.address")) or _str(attrs.get("net.peer.name")) or url_host
        )
        peer_port = (
            to_port(attrs.get("server.port")) or to_port(attrs.get("net.peer.port")) or url_port
        )
    return route, method, target, peer_address, peer_port, local_port
