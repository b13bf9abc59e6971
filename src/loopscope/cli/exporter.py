"""``loopscope exporter``: Prometheus /metrics (or a textfile) of loopback traffic, counted in the kernel."""

from __future__ import annotations

import logging

import typer

from loopscope.cli.common import cli_errors, err_console
from loopscope.errors import UsageError

__all__ = ["exporter_command", "register"]


@cli_errors
def exporter_command(
    listen: str = typer.Option(
        "127.0.0.1:9864", "--listen", help="IP:PORT for /metrics; a wider bind is logged."
    ),
    all_netns: bool = typer.Option(
        False, "--all-netns", help="Every network namespace (containers), not only this one."
    ),
    textfile: str | None = typer.Option(
        None, "--textfile", help="Write this file atomically every --interval instead of serving."
    ),
    interval: float = typer.Option(15.0, "--interval", help="Seconds between textfile writes."),
    max_client_apps: int = typer.Option(
        200, "--max-client-apps", help="Distinct client_app values kept; the rest are 'other'."
    ),
    counts_interval: float = typer.Option(
        30.0,
        "--counts-interval",
        help="Seconds between counts of ephemeral ports and TIME_WAIT (a host-wide table walk); "
        "0 counts at every scrape.",
    ),
    doctor_interval: float = typer.Option(
        300.0, "--doctor-interval", help="Seconds between doctor rung-1 checks; 0 turns them off."
    ),
    http: bool = typer.Option(
        False,
        "--http",
        help="Count HTTP/1.x requests per edge (start lines captured on lo; needs CAP_NET_RAW).",
    ),
    no_ebpf: bool = typer.Option(
        False, "--no-ebpf", help="Do not load the in-kernel counter (no traffic metrics)."
    ),
) -> None:
    """Serve Prometheus metrics: listeners, queues, ports, loopback calls and self-calls."""
    try:
        from loopscope.exporter.collector import ExporterOptions
        from loopscope.exporter.serve import ServeOptions, run_exporter
    except ImportError as exc:
        raise UsageError(
            f"the exporter needs prometheus-client: pip install 'loopscope[exporter]' ({exc})"
        ) from exc
    if interval <= 0 or max_client_apps < 1 or counts_interval < 0 or doctor_interval < 0:
        raise UsageError("--interval must be > 0, --max-client-apps >= 1, the other intervals >= 0")
    logging.basicConfig(level=logging.INFO, format="loopscope exporter: %(message)s")
    run_exporter(
        ExporterOptions(
            all_netns=all_netns,
            max_client_apps=max_client_apps,
            counts_interval_s=counts_interval,
            doctor_interval_s=doctor_interval,
            http=http,
        ),
        ServeOptions(listen=listen, textfile=textfile, interval_s=interval, ebpf=not no_ebpf),
        ready=lambda text: err_console().print(f"loopscope exporter: {text}"),
    )


def register(app: typer.Typer) -> None:
    """Add ``exporter`` to the app."""
    app.command("exporter")(exporter_command)
