"""Start-up fast path: run ``loopscope ports --json`` and ``ports --format tsv`` without importing
typer, click or rich.

People run ``loopscope ports --json`` (or its TSV) in loops; at 1k sockets the work takes a few
milliseconds and importing typer (with click) costs more than the rest of the command.
:func:`run_fast` recognises a command line it can run exactly as the typer command would (a dispatch
table: command, output mode, the options each accepts and a value check for each) and runs the
command body; anything else (``--help``, an option it does not know, a value it does not accept,
``--opt=value`` forms it cannot vouch for, ``--format table``, which rich draws) returns None and the
caller builds the typer app as before, so every error message and every other path stays the typer
one. The output is byte-identical to the typer path (tested in ``tests/unit/cli/test_fastpath.py``).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FAST_COMMANDS", "FastCommand", "parse_fast", "run_fast"]

_SEVERITIES = ("info", "low", "medium", "high", "critical", "never")


def _port(value: str) -> bool:
    return value.isascii() and value.isdigit() and 0 < int(value) < 65536


def _pid(value: str) -> bool:
    if not (value.isascii() and value.isdigit() and int(value) > 0):
        return False
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(value) <= int(f.read())
    except (OSError, ValueError):
        return False  # let the typer path check it


def _one_of(*allowed: str) -> Callable[[str], bool]:
    return lambda value: value in allowed


def _non_empty(value: str) -> bool:
    return bool(value) and not value.startswith("-")


@dataclass(frozen=True, slots=True, kw_only=True)
class FastCommand:
    """A command line the fast path can run: its flags, its valued options and its body."""

    flags: frozenset[str]
    """Options without a value."""
    options: dict[str, Callable[[str], bool]]
    """Options with a value -> the check a value must pass (else the typer path runs)."""
    defaults: dict[str, Any]
    """Value of every option when it is not given (flags: False)."""
    run: Callable[[dict[str, Any]], int]
    """The body: parsed options (keys without ``--``, ``-`` -> ``_``) -> exit code."""


def _ports_json(opts: dict[str, Any]) -> int:
    """``loopscope ports --json``: the same steps as :func:`loopscope.cli.ports.ports_command`."""
    return _ports(opts, tsv=False)


def _ports_tsv(opts: dict[str, Any]) -> int:
    """``loopscope ports --format tsv``: the same steps and bytes as the typer command's TSV."""
    return _ports(opts, tsv=True)


def _ports(opts: dict[str, Any], *, tsv: bool) -> int:
    forked = None
    if not opts["no_processes"] and sys.platform.startswith("linux"):  # else psutil: no fd walk
        # The /proc fd walk (~14 ms at 2,000 fds) in a child forked now, before the imports below
        # (~35 ms): it runs on the other core meanwhile; same scan the collector would start.
        from loopscope.backends.linux.fdtables import fork_scan

        forked = fork_scan()
    from loopscope.cli.listing import (
        exposure_findings,
        listener_tables,
        ports_document,
        ports_tsv,
        select_listeners,
    )
    from loopscope.collect import Collector, snapshot_options

    collector = Collector.for_source(
        opts["source"],
        **snapshot_options(attribute=not opts["no_processes"], listening_only=True, tcp_info=False),
    )
    owners = None
    if forked is not None:
        from loopscope.backends.linux.fdscan import collect_forked

        owners = collect_forked(*forked)
    snapshots = collector.snapshots((opts["netns"],), all_netns=opts["all_netns"], owners=owners)
    rows, tables, gaps = listener_tables(snapshots)
    port = None if opts["port"] is None else int(opts["port"])
    pid = None if opts["pid"] is None else int(opts["pid"])
    rows = select_listeners(rows, port=port, pid=pid, scope=opts["scope"], proto=opts["proto"])
    findings = exposure_findings(tables, rows, {})
    if tsv:
        text = ports_tsv(snapshots, rows, findings, gaps)
    else:
        from loopscope.render.jsonable import format_json_document

        text = format_json_document("ports", ports_document(snapshots, rows, findings, gaps))
    sys.stdout.write(text)
    sys.stdout.flush()
    return _exit_code(findings, opts["fail_on"])


def _exit_code(findings: Sequence[Any], fail_on: str) -> int:
    """0, or 1 when a finding is at or above ``fail_on`` (as ``cli.common.exit_code_for``)."""
    from loopscope.model import Severity

    if fail_on == "never":
        return 0
    threshold = Severity(fail_on)
    return 1 if any(f.severity.rank >= threshold.rank for f in findings) else 0


_SNAPSHOT_OPTIONS: dict[str, Callable[[str], bool]] = {
    "--netns": _non_empty,
    "--source": _one_of("auto", "sock_diag", "procfs"),  # psutil has cross-option checks
    "--fail-on": _one_of(*_SEVERITIES),
}

_PORTS_OPTIONS: dict[str, Callable[[str], bool]] = {
    **_SNAPSHOT_OPTIONS,
    "--port": _port,
    "--pid": _pid,
    "--scope": _one_of("loopback", "wildcard", "own-address", "other"),
    "--proto": _one_of("tcp", "udp"),
}
_PORTS_DEFAULTS: dict[str, Any] = {
    "netns": None,
    "source": "auto",
    "fail_on": "high",
    "port": None,
    "pid": None,
    "scope": None,
    "proto": None,
}

# (command, output option) -> how to run it; the output option must be given.
FAST_COMMANDS: dict[tuple[str, str], FastCommand] = {
    ("ports", "--json"): FastCommand(
        flags=frozenset({"--json", "--all-netns", "--no-processes"}),
        options=_PORTS_OPTIONS,
        defaults=_PORTS_DEFAULTS,
        run=_ports_json,
    ),
    # --format table draws with rich: the typer path
    ("ports", "--format"): FastCommand(
        flags=frozenset({"--all-netns", "--no-processes", "--wide"}),  # --wide: no effect on TSV
        options={**_PORTS_OPTIONS, "--format": _one_of("tsv")},
        defaults={**_PORTS_DEFAULTS, "format": "tsv"},
        run=_ports_tsv,
    ),
}


def parse_fast(args: Sequence[str]) -> tuple[FastCommand, dict[str, Any]] | None:
    """The fast command and its options for ``args`` (without the program name), or None when the
    typer path must run it.

    Example: ``parse_fast(["ports", "--json", "--port", "22"])`` -> the ``ports --json`` entry with
    ``{"port": "22", "json": True, ...}``; ``parse_fast(["ports", "--json", "--port", "x"])`` -> None.
    """
    if not args:
        return None
    command = next(
        (c for (name, flag), c in FAST_COMMANDS.items() if args[0] == name and flag in args[1:]),
        None,
    )
    if command is None:
        return None
    opts: dict[str, Any] = dict(command.defaults)
    opts.update({f[2:].replace("-", "_"): False for f in command.flags})
    i = 1
    while i < len(args):
        arg = args[i]
        if arg in command.flags:
            opts[arg[2:].replace("-", "_")] = True
        elif arg in command.options:
            if i + 1 >= len(args) or not command.options[arg](args[i + 1]):
                return None
            if arg in args[1:i]:
                return None  # a repeated --port/--pid means any of them: the typer path
            opts[arg[2:].replace("-", "_")] = args[i + 1]
            i += 1
        else:
            return None  # --help, --opt=value, an unknown option, an argument: typer decides
        i += 1
    if opts.get("netns") is not None and opts.get("all_netns"):
        return None  # a usage error: typer words it
    return command, opts


def run_fast(args: Sequence[str]) -> int | None:
    """Run ``args`` on the fast path; None when it is not one of :data:`FAST_COMMANDS`.

    Errors end as in the typer path (``cli.common.cli_errors``): one line on stderr and exit 2,
    130 on Ctrl-C, 141 when the reader of stdout goes away.
    """
    parsed = parse_fast(args)
    if parsed is None:
        return None
    command, opts = parsed
    # The run is the process's whole work and it ends right after: the cyclic collector would only
    # walk, again and again, the objects the imports create (13 passes), and once more at exit, and
    # reclaim nothing. Paused for the run and the survivors frozen: ~6 ms of a ~60 ms run, same output.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _run_guarded(command, opts)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def _run_guarded(command: FastCommand, opts: dict[str, Any]) -> int:
    """``command.run(opts)`` with the errors of :func:`run_fast` turned into exit codes."""
    from loopscope.errors import LoopscopeError

    try:
        return command.run(opts)
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass  # stdout is already unusable; the exit status still says what happened
        return 141
    except KeyboardInterrupt:
        sys.stderr.write("loopscope: interrupted\n")
        return 130
    except LoopscopeError as exc:
        if os.environ.get("LOOPSCOPE_DEBUG"):
            raise
        sys.stderr.write(f"loopscope: error: {exc}\n")
        return 2
    except Exception as exc:  # the CLI boundary, as cli_errors
        if os.environ.get("LOOPSCOPE_DEBUG"):
            raise
        sys.stderr.write(f"loopscope: internal error: {type(exc).__name__}: {exc}\n")
        return 2
