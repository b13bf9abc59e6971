"""Serving: ``/metrics`` over HTTP (127.0.0.1 by default; a Host header check against DNS rebinding),
or a textfile written atomically every interval (node_exporter's textfile collector).

:func:`run_exporter` owns the lifetime: it loads the kernel counter (when it can), registers the
collector on an explicit registry, starts its background work (the counting thread), serves until
SIGTERM, SIGHUP or SIGINT, then stops it and detaches the counter.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app, write_to_textfile

from loopscope.errors import LoopscopeError, UsageError
from loopscope.exporter.collector import ExporterOptions, LoopscopeCollector

__all__ = [
    "DEFAULT_LISTEN",
    "ServeOptions",
    "build_registry",
    "host_allowed",
    "make_metrics_server",
    "parse_listen",
    "run_exporter",
]

log = logging.getLogger("loopscope.exporter")
DEFAULT_LISTEN = "127.0.0.1:9864"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeOptions:
    """How to expose the metrics."""

    listen: str = DEFAULT_LISTEN
    """``HOST:PORT`` for /metrics (``[::1]:9864`` for IPv6)."""
    textfile: str | None = None
    """Write this file every ``interval_s`` instead of serving HTTP."""
    interval_s: float = 15.0
    """Seconds between textfile writes."""
    ebpf: bool = True
    """Load the in-kernel counter (root); without it, traffic metrics are absent."""
    max_entries: int = 16384
    """Kernel counter map size."""
    client_entries: int = 16384
    """Kernel client map size (connections; LRU; with ``--http`` only)."""


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9864"`` -> ``("127.0.0.1", 9864)``; ``"[::1]:9864"`` -> ``("::1", 9864)``.

    Raises:
        UsageError: not HOST:PORT with a literal IP address.
    """
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError as exc:
        raise UsageError(f"--listen wants IP:PORT, not {text!r}") from exc
    if not sep or not 0 <= number <= 65535:
        raise UsageError(f"--listen wants IP:PORT, not {text!r}")
    return host, number


def host_allowed(host_header: str | None, bind_host: str) -> bool:
    """DNS-rebinding guard: the Host header must be an IP literal or ``localhost`` (a page served
    by evil.example that resolves to 127.0.0.1 sends ``Host: evil.example``). Absent is allowed
    (HTTP/1.0 scrapers). A wider bind accepts any name: the operator chose to expose it.

    Example: ``host_allowed("127.0.0.1:9864", "127.0.0.1") is True``,
    ``host_allowed("evil.example:9864", "127.0.0.1") is False``.
    """
    if host_header is None or not ipaddress.ip_address(bind_host).is_loopback:
        return True
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    name = name.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def build_registry(collector: LoopscopeCollector) -> CollectorRegistry:
    """An explicit registry holding only the loopscope collector (no default process metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = False  # a second exporter on the same port must fail, not share


class _V6Server(_Server):
    import socket as _socket

    address_family = _socket.AF_INET6


def make_metrics_server(registry: CollectorRegistry, host: str, port: int) -> WSGIServer:
    """A WSGI server for ``/metrics`` (and ``/`` with a pointer), Host-checked. Not started.

    Raises:
        UsageError: the address is in use (another exporter?) or cannot be bound.
    """
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not host_allowed(environ.get("HTTP_HOST"), host):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"Host header refused (DNS rebinding guard)\n"]
        if environ.get("PATH_INFO") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"see /metrics\n"]
        if environ.get("PATH_INFO") == "/":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"loopscope exporter: /metrics\n"]
        result: Iterable[bytes] = metrics(environ, start_response)
        return result

    cls = _V6Server if ":" in host else _Server
    try:
        return make_server(host, port, app, server_class=cls, handler_class=_QuietHandler)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}"
            + (" (another exporter running?)" if exc.errno == 98 else "")
        ) from exc


def _load_counter(serve: ServeOptions, http: bool) -> tuple[Any, str]:
    if not serve.ebpf:
        return None, "disabled (--no-ebpf)"
    from loopscope.backends.linux.bpf.counter import ConnectionCounter

    try:
        # the client map (names HTTP clients) only with --http: no per-connect work otherwise
        clients = serve.client_entries if http else 0
        return ConnectionCounter(max_entries=serve.max_entries, client_entries=clients), ""
    except (LoopscopeError, OSError) as exc:
        log.warning("in-kernel counting unavailable, traffic metrics absent: %s", exc)
        return None, str(exc)


def run_exporter(
    options: ExporterOptions,
    serve: ServeOptions,
    *,
    stop: threading.Event | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve (or write the textfile) until SIGTERM/SIGHUP/SIGINT or ``stop`` is set; detach after.

    Args:
        options: what to collect.
        serve: how to expose it.
        stop: an event to stop from another thread (tests); signals set it too.
        ready: called with a one-line description once serving.

    Raises:
        UsageError: bad --listen, or the port is taken.
    """
    stop = stop or threading.Event()
    host, port = parse_listen(serve.listen) if serve.textfile is None else ("127.0.0.1", 0)
    counter, reason = _load_counter(serve, options.http)
    previous: dict[int, Any] = {}
    collector = LoopscopeCollector(options, counter, reason)
    try:
        registry = build_registry(collector)
        # the textfile is written every interval: its counts can be made inline, no thread
        collector.start(background_counts=serve.textfile is None)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                previous[signum] = signal.signal(signum, lambda *_: stop.set())
        mode = "ebpf_counter" if counter is not None else f"no in-kernel counting ({reason})"
        if serve.textfile is not None:
            if ready:
                ready(f"writing {serve.textfile} every {serve.interval_s:g} s; {mode}")
            while not stop.is_set():
                write_to_textfile(serve.textfile, registry)  # tmp file + rename: atomic
                stop.wait(serve.interval_s)
            return
        server = make_metrics_server(registry, host, port)
        if not ipaddress.ip_address(host).is_loopback:
            log.warning("listening on %s:%d: reachable beyond this host", host, port)
        thread = threading.Thread(target=server.serve_forever, name="loopscope-exporter")
        thread.start()
        if ready:
            bound = server.server_address[1]
            ready(f"serving http://{host}:{bound}/metrics; {mode}")
        try:
            stop.wait()
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
    finally:
        collector.stop()
        if counter is not None:
            counter.close()
        for prev_signum, handler in previous.items():
            signal.signal(prev_signum, handler)
