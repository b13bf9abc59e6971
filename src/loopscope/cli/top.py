"""``loopscope top``: a live, top-like screen over one watch session (needs the ``tui`` extra)."""

from __future__ import annotations

import typer

from loopscope.cli.common import cli_errors
from loopscope.errors import BackendUnavailable, UsageError

__all__ = ["register", "top_command"]


@cli_errors
def top_command(
    pid: list[int] = typer.Option([], "--pid", help="Only the app owning this pid (repeatable)."),
    port: list[int] = typer.Option(
        [], "--port", help="Only the app listening on this port (repeatable)."
    ),
    http: bool = typer.Option(
        False, "--http", help="Count HTTP/1.x requests per connection (root; AF_PACKET on lo)."
    ),
    netns: str | None = typer.Option(
        None, "--netns", help="Namespace: NAME (/run/netns), PID or path."
    ),
    interval: float = typer.Option(
        1.0, "--interval", help="Seconds between snapshots (listeners, queues, pools)."
    ),
    refresh: float = typer.Option(
        1.0, "--refresh", help="Seconds between screen updates (at least 0.5)."
    ),
    window: float = typer.Option(10.0, "--window", help="Seconds of recent traffic shown."),
    no_ebpf: bool = typer.Option(False, "--no-ebpf", help="Do not load the eBPF sockops program."),
) -> None:
    """Live loopback screen: apps (external/s, self/s, amplification), edges, listeners, findings."""
    try:
        from loopscope.tui.app import TopApp
    except ImportError as exc:
        raise BackendUnavailable("textual is missing: pip install 'loopscope[tui]'") from exc
    from loopscope.backends.linux.netns import resolve_netns
    from loopscope.tui.source import MIN_REFRESH_S, NetnsChoice, SessionSwitcher
    from loopscope.watch.session import WatchOptions

    if interval <= 0 or window <= 0:
        raise UsageError("--interval and --window must be positive")
    if refresh < MIN_REFRESH_S:
        raise UsageError(f"--refresh must be at least {MIN_REFRESH_S} s")
    options = WatchOptions(
        netns=netns,
        ebpf=not no_ebpf,
        http=http,
        http_ports=tuple(port) if http else (),
        snapshot_interval_s=interval,
    )
    switcher = SessionSwitcher(
        options, pids=tuple(pid), ports=tuple(port), window_s=window, refresh_s=refresh
    )
    start = NetnsChoice(spec=netns, label=resolve_netns(netns).label)
    app = TopApp(switcher.open(netns), refresh_s=refresh, switcher=switcher, netns=start)
    try:
        app.run()
    finally:
        app.source.close()  # the one open now (``n`` closes each one it replaces)


def register(app: typer.Typer) -> None:
    """Add ``top`` to the app."""
    app.command("top")(top_command)
