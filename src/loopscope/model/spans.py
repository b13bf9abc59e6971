"""Span records read from OpenTelemetry, Jaeger or Zipkin traces (stdlib only, no I/O).

One shape for every input format: the readers in :mod:`loopscope.traces` decode OTLP (with the official
``opentelemetry-proto`` package), Jaeger JSON and Zipkin v2 JSON into :class:`SpanRecord`;
:mod:`loopscope.analysis.traces` reads only these.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["SpanKind", "SpanRecord", "SpanStatus"]


class SpanKind(str, enum.Enum):
    """The role of a span (OTLP ``Span.SpanKind``, Zipkin ``kind``, Jaeger tag ``span.kind``)."""

    UNSPECIFIED = "unspecified"
    INTERNAL = "internal"
    SERVER = "server"
    CLIENT = "client"
    PRODUCER = "producer"
    CONSUMER = "consumer"

    def __str__(self) -> str:
        return self.value


class SpanStatus(str, enum.Enum):
    """Outcome of a span (OTLP ``Status.StatusCode``; Jaeger/Zipkin tag ``error`` maps to ERROR)."""

    UNSET = "unset"
    OK = "ok"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class SpanRecord:
    """One span, with the few attributes loopscope reads.

    Example (a Flask server span of service ``shop`` for ``GET /order`` on port 8000)::

        SpanRecord(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7",
                   parent_id=None, service="shop", kind=SpanKind.SERVER, name="GET /order",
                   route="/order", method="GET", target="/order?id=1",
                   start_ns=1_700_000_000_000_000_000, end_ns=1_700_000_000_012_000_000,
                   local_port=8000)
    """

    trace_id: str
    """Lower-case hex trace id (32 digits in OTLP; Zipkin may use 16)."""
    span_id: str
    """Lower-case hex span id (16 digits)."""
    parent_id: str | None
    """Hex id of the parent span; None for a root span."""
    service: str
    """``service.name`` of the process that recorded the span (resource attribute, Jaeger process,
    Zipkin ``localEndpoint.serviceName``); ``"unknown_service"`` when absent."""
    kind: SpanKind
    """Server, client, internal..."""
    name: str
    """Span name, e.g. ``GET /order``."""
    route: str | None = None
    """``http.route`` (server spans): the route template, e.g. ``/order/<id>``."""
    method: str | None = None
    """HTTP method: ``http.request.method`` or the older ``http.method``."""
    target: str | None = None
    """Path (with query) asked for: ``url.path``/``http.target``, or the path of ``url.full``/``http.url``."""
    start_ns: int
    """Start, nanoseconds since the Unix epoch (the recording process's clock)."""
    end_ns: int
    """End, nanoseconds since the Unix epoch; ``end_ns >= start_ns`` for well-formed spans."""
    peer_address: str | None = None
    """Client spans: the host called (``server.address``, ``net.peer.name``, host of the URL)."""
    peer_port: int | None = None
    """Client spans: the port called (``server.port``, ``net.peer.port``, port of the URL)."""
    local_port: int | None = None
    """Server spans: the port the request came in on (``server.port``, ``net.host.port``)."""
    status: SpanStatus = SpanStatus.UNSET
    """Outcome."""

    @property
    def duration_ns(self) -> int:
        """``end_ns - start_ns``, never negative."""
        return max(0, self.end_ns - self.start_ns)
