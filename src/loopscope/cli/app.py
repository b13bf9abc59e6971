"""The ``loopscope`` command: a typer app; each command lives in its own module with ``register(app)``.

Plain ``loopscope`` runs ``loopscope scan``.
"""

from __future__ import annotations

import importlib

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="loopscope",
    help="Everything this machine says to itself over loopback, and what it costs.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One line per command module; each module defines register(app: typer.Typer) -> None.
_COMMANDS: tuple[str, ...] = (
    "loopscope.cli.simulate",
    "loopscope.cli.lab",
    "loopscope.cli.scan",
    "loopscope.cli.ports",
    "loopscope.cli.map",
    "loopscope.cli.doctor",
    "loopscope.cli.bench",
    "loopscope.cli.watch",
    "loopscope.cli.probe",
)

for _name in _COMMANDS:
    importlib.import_module(_name).register(app)


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    """Everything this machine says to itself over loopback. With no command: `loopscope scan`."""
    if ctx.invoked_subcommand is None:
        scan = ctx.command.get_command(ctx, "scan")  # type: ignore[attr-defined]
        ctx.invoke(scan)


def main() -> None:
    """Console-script entry point."""
    app()
