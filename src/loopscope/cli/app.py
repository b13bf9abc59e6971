"""The ``loopscope`` command: a typer app; each command lives in its own module with ``register(app)``.

Plain ``loopscope`` runs ``loopscope scan``. Start-up stays light: :func:`main` imports only the module
of the command being run (every module only for ``--help`` or an unknown command), because people run
``loopscope ports --json`` in loops and the simulation, lab and watch machinery is heavy to import.
``loopscope.cli.app.app`` (used by tests with typer's CliRunner) is the app with every command.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Sequence

import typer

__all__ = ["COMMANDS", "build_app", "main"]

# command name -> module defining register(app: typer.Typer) -> None, in help order.
COMMANDS: dict[str, str] = {
    "scan": "loopscope.cli.scan",
    "ports": "loopscope.cli.ports",
    "map": "loopscope.cli.map",
    "doctor": "loopscope.cli.doctor",
    "probe": "loopscope.cli.probe",
    "watch": "loopscope.cli.watch",
    "bench": "loopscope.cli.bench",
    "simulate": "loopscope.cli.simulate",
    "lab": "loopscope.cli.lab",
    "traces": "loopscope.cli.traces",
    "exporter": "loopscope.cli.exporter",
}


def _root(ctx: typer.Context) -> None:
    """Everything this machine says to itself over loopback. With no command: `loopscope scan`."""
    if ctx.invoked_subcommand is None:
        scan = ctx.command.get_command(ctx, "scan")  # type: ignore[attr-defined]
        ctx.invoke(scan)


def build_app(only: Iterable[str] | None = None) -> typer.Typer:
    """The typer app with the commands in ``only`` (all when None); ``scan`` is always there."""
    wanted = None if only is None else set(only) | {"scan"}
    app = typer.Typer(
        name="loopscope",
        help="Everything this machine says to itself over loopback, and what it costs.",
        no_args_is_help=False,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name, module in COMMANDS.items():
        if wanted is None or name in wanted:
            importlib.import_module(module).register(app)
    app.callback(invoke_without_command=True)(_root)
    return app


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named on the command line: the first argument that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def __getattr__(name: str) -> typer.Typer:
    if name == "app":
        full = build_app()
        globals()["app"] = full
        return full
    raise AttributeError(name)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(args)
    if command in COMMANDS:
        only: set[str] | None = {command}
    elif command is None and not any(a in ("--help", "-h") for a in args):
        only = {"scan"}
    else:
        only = None  # --help or an unknown command: typer lists (or suggests) every command
    build_app(only)(args=args, prog_name="loopscope")
