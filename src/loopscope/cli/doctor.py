"""``loopscope doctor``: the troubleshooting ladder, loopback first, then the local network, then outside."""

from __future__ import annotations

import typer

from loopscope.cli.common import (
    FailOnOption,
    FormatOption,
    JsonOption,
    WideOption,
    cli_errors,
    console,
    emit_json,
    err_console,
    exit_code_for,
)
from loopscope.cli.options import PidsOption, PortsOption
from loopscope.errors import UsageError

__all__ = ["doctor_command", "register"]


@cli_errors
def doctor_command(
    netns: str | None = typer.Option(
        None, "--netns", help="Run the ladder in another namespace: NAME, PID or path."
    ),
    all_netns: bool = typer.Option(
        False, "--all-netns", help="Run the ladder in every distinct namespace."
    ),
    external: str | None = typer.Option(
        None, "--external", help="Rung 3: resolve and TCP-connect HOST:PORT."
    ),
    rung: int = typer.Option(
        2,
        "--rung",
        help="Highest rung to run: 1 loopback, 2 local network; --external adds rung 3.",
    ),
    no_firewall: bool = typer.Option(
        False, "--no-firewall", help="Do not read nft/iptables rulesets."
    ),
    no_processes: bool = typer.Option(
        False, "--no-processes", help="Skip the /proc fd scan (no listener owners)."
    ),
    hosts_file: str | None = typer.Option(
        None, "--hosts-file", help="Hosts file to judge instead of the namespace's."
    ),
    port: list[int] = PortsOption,
    pid: list[int] = PidsOption,
    json_out: bool = JsonOption,
    wide: bool = WideOption,
    table_format: str = FormatOption,
    fail_on: str = FailOnOption,
) -> None:
    """Is loopback healthy here? Each rung: verdict, evidence with numbers, and what to do."""
    from loopscope.doctor.gather import DoctorOptions
    from loopscope.doctor.runner import parse_external, run_doctor

    if rung not in (1, 2, 3):
        raise UsageError("--rung must be 1, 2 or 3")
    target = parse_external(external) if external else None
    opts = DoctorOptions(
        max_rung=rung,
        external=target,
        firewall=not no_firewall,
        attribute=not no_processes,
        hosts_path=hosts_file,
        ports=tuple(port),
        pids=tuple(pid),
    )
    if json_out:
        report = run_doctor(netns, all_netns, opts)
    else:
        with err_console().status("doctor: reading and probing...") as status:
            report = run_doctor(
                netns, all_netns, opts, lambda label: status.update(f"doctor: netns {label}")
            )
    if json_out:
        from loopscope.doctor.render import doctor_report_json

        options = {
            "netns": netns,
            "all_netns": all_netns,
            "rung": rung,
            "external": external,
            "firewall": not no_firewall,
            "processes": not no_processes,
            "hosts_file": hosts_file,
            "ports": list(port),
            "pids": list(pid),
        }
        emit_json("doctor", doctor_report_json(report, options))
    else:
        from loopscope.doctor.render import print_report

        print_report(console(), report)
    raise typer.Exit(exit_code_for(report.findings, fail_on))


def register(app: typer.Typer) -> None:
    """Add ``doctor`` to the app."""
    app.command("doctor")(doctor_command)
