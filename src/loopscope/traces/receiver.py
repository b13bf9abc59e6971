"""An OTLP/HTTP trace receiver: ``POST /v1/traces`` (protobuf or JSON, optionally gzip), and Zipkin v2
``POST /api/v2/spans``, served by the stdlib ``http.server`` in a thread.

Point any OpenTelemetry SDK or Collector at it (``OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318``).
It binds 127.0.0.1 by default, refuses Host headers that are not an IP literal or ``localhost`` (DNS
rebinding), caps the body size and the spans it keeps: spans past ``max_spans`` are dropped, counted, and
reported back to the sender as OTLP ``partial_success.rejected_spans``.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loopscope.errors import UsageError
from loopscope.model.spans import SpanRecord
from loopscope.traces.otlp import decode_otlp_protobuf, request_class
from loopscope.traces.otlp_json import decode_otlp_json_fast
from loopscope.traces.zipkin import decode_zipkin

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_SPANS", "OtlpReceiver", "ReceiverStats"]

DEFAULT_MAX_SPANS = 2_000_000
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
_MAX_CONCURRENT = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverStats:
    """Counters of a receiver since it started."""

    requests: int
    """Export requests accepted (2xx)."""
    rejected_requests: int
    """Requests refused: bad path, Host, size, encoding or body (4xx)."""
    spans: int
    """Spans kept."""
    dropped_spans: int
    """Spans decoded but dropped because ``max_spans`` were already kept."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: OtlpReceiver


def _host_ok(host: str | None) -> bool:
    if not host:
        return True  # HTTP/1.0 clients send none
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the report says what arrived."""

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, code: int, message: str) -> None:
        self.server.receiver._count_rejected()
        self._reply(code, json.dumps({"message": message}).encode(), "application/json")

    def do_GET(self) -> None:
        self._refuse(405, "POST spans to /v1/traces (OTLP/HTTP) or /api/v2/spans (Zipkin v2)")

    def do_POST(self) -> None:
        receiver = self.server.receiver
        path = self.path.split("?", 1)[0]
        if path not in ("/v1/traces", "/api/v2/spans"):
            self._refuse(404, f"unknown path {path}")
            return
        if not _host_ok(self.headers.get("Host")):
            self._refuse(403, "Host header is not an IP address or localhost")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._refuse(411, "Content-Length required")
            return
        if length < 0 or length > receiver.max_body_bytes:
            self._refuse(413, f"body larger than {receiver.max_body_bytes} bytes")
            self.close_connection = True
            return
        body = self.rfile.read(length)
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        with receiver._slots:
            try:
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = _gunzip(body, receiver.max_body_bytes)
                if receiver.on_body is not None:
                    receiver.on_body(path, content_type, body)
                spans = _decode(path, content_type, body)
            except (ValueError, EOFError, OSError, zlib.error, RecursionError) as exc:
                self._refuse(400, f"cannot decode the body: {str(exc).splitlines()[0][:200]}")
                return
            dropped = receiver._add(spans)
        if path == "/api/v2/spans":
            self._reply(202, b"", "text/plain")
        elif content_type == "application/json":
            answer = {"partialSuccess": {"rejectedSpans": str(dropped)}} if dropped else {}
            self._reply(200, json.dumps(answer).encode(), "application/json")
        else:
            self._reply(200, _protobuf_answer(dropped), "application/x-protobuf")


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit:
        raise ValueError(f"gzip body inflates past {limit} bytes")
    return out


def _decode(path: str, content_type: str, body: bytes) -> list[SpanRecord]:
    if path == "/api/v2/spans":
        spans, _ = decode_zipkin(json.loads(body))
        return spans
    if content_type == "application/json":
        return decode_otlp_json_fast(json.loads(body))
    return decode_otlp_protobuf(body)


def _protobuf_answer(dropped: int) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    answer = ExportTraceServiceResponse()
    if dropped:
        answer.partial_success.rejected_spans = dropped
        answer.partial_success.error_message = "loopscope receiver full (max spans)"
    return answer.SerializeToString()


class OtlpReceiver:
    """Receive spans over HTTP until stopped; thread-safe, bounded.

    Args:
        host: address to bind (127.0.0.1 by default; anything else is the caller's choice).
        port: port to bind; 0 picks a free one (see :attr:`port`).
        max_spans: spans kept at most; later ones are dropped and counted.
        max_body_bytes: largest request body accepted (after gzip inflation too).
        on_body: called with (path, content type, body) of every request before decoding (to record it).

    Raises:
        UsageError: opentelemetry-proto is missing, or the address cannot be bound.

    Example::

        with OtlpReceiver(port=0) as rx:
            ...  # OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{rx.port}"
            spans = rx.spans()
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4318,
        *,
        max_spans: int = DEFAULT_MAX_SPANS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        on_body: Callable[[str, str, bytes], None] | None = None,
    ) -> None:
        request_class()  # fail now, with the install hint, not at the first request
        self.max_spans = max_spans
        self.max_body_bytes = max_body_bytes
        self.on_body = on_body
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(_MAX_CONCURRENT)
        self._spans: list[SpanRecord] = []
        self._requests = 0
        self._rejected = 0
        self._dropped = 0
        try:
            self._server = _Server((host, port), _Handler)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self._server.receiver = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port bound."""
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """The address bound."""
        return str(self._server.server_address[0])

    def start(self) -> OtlpReceiver:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="loopscope-otlp", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (spans stay readable)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _add(self, spans: list[SpanRecord]) -> int:
        with self._lock:
            self._requests += 1
            room = max(0, self.max_spans - len(self._spans))
            self._spans.extend(spans[:room])
            dropped = max(0, len(spans) - room)
            self._dropped += dropped
            return dropped

    def _count_rejected(self) -> None:
        with self._lock:
            self._rejected += 1

    def spans(self) -> list[SpanRecord]:
        """A copy of the spans kept so far."""
        with self._lock:
            return list(self._spans)

    def stats(self) -> ReceiverStats:
        """Counters so far."""
        with self._lock:
            return ReceiverStats(
                requests=self._requests,
                rejected_requests=self._rejected,
                spans=len(self._spans),
                dropped_spans=self._dropped,
            )
