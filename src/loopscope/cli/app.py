"""The ``loopscope`` command: a typer app; each command lives in its own module with ``register(app)``.

Plain ``loopscope`` runs ``loopscope scan``. Start-up stays light: :func:`main` imports only the module
of the command being run (every module only for ``--help`` or an unknown command), because people run
``loopscope ports --json`` in loops and the simulation, lab and watch machinery is heavy to import.
``loopscope.cli.app.app`` (used by tests with typer's CliRunner) is the app with every command.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typer is imported when the app is built: `ports --json` runs without it
    import typer
    from typer._click import exceptions as click_exceptions

__all__ = ["COMMANDS", "build_app", "main"]

# command name -> module defining register(app: typer.Typer) -> None, in help order.
COMMANDS: dict[str, str] = {
    "scan": "loopscope.cli.scan",
    "ports": "loopscope.cli.ports",
    "map": "loopscope.cli.map",
    "doctor": "loopscope.cli.doctor",
    "probe": "loopscope.cli.probe",
    "watch": "loopscope.cli.watch",
    "top": "loopscope.cli.top",
    "bench": "loopscope.cli.bench",
    "simulate": "loopscope.cli.simulate",
    "lab": "loopscope.cli.lab",
    "traces": "loopscope.cli.traces",
    "trace": "loopscope.cli.trace",
    "exporter": "loopscope.cli.exporter",
}


def _print_version(value: bool) -> None:
    import typer

    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            sys.stdout.write(f"loopscope {version('loopscope')}\n")
        except PackageNotFoundError:
            sys.stdout.write("loopscope (not installed: version unknown)\n")
        raise typer.Exit(0)


def _make_root() -> Callable[..., None]:
    """The root callback (built on demand: its option default needs typer)."""
    import typer

    def _root(
        ctx: typer.Context,
        show_version: bool = typer.Option(
            False,
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ) -> None:
        """Everything this machine says to itself over loopback. With no command: `loopscope scan`."""
        if ctx.invoked_subcommand is None:
            scan = ctx.command.get_command(ctx, "scan")  # type: ignore[attr-defined]
            ctx.invoke(scan)

    # typer reads the annotations; as strings they would be evaluated where typer is not imported
    _root.__annotations__ = {"ctx": typer.Context, "show_version": bool, "return": None}
    return _root


def build_app(only: Iterable[str] | None = None) -> typer.Typer:
    """The typer app with the commands in ``only`` (all when None); ``scan`` is always there."""
    import typer

    wanted = None if only is None else set(only) | {"scan"}
    app = typer.Typer(
        name="loopscope",
        help="Everything this machine says to itself over loopback, and what it costs.",
        no_args_is_help=False,
        add_completion=True,
        pretty_exceptions_enable=False,
        # Help texts are plain text: `[SCHEME://][HOST][:PORT]` must not be read as rich markup.
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    for name, module in COMMANDS.items():
        if wanted is None or name in wanted:
            importlib.import_module(module).register(app)
    app.callback(invoke_without_command=True)(_make_root())
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


def _usage_error(exc: click_exceptions.UsageError) -> int:
    """One line for a usage error (click would draw a box): ``loopscope ports: error: ...``."""
    ctx = exc.ctx
    where = ctx.command_path if ctx is not None else "loopscope"
    hint = f" (see '{where} --help')" if ctx is not None else ""
    from loopscope.render.text import printable

    message = printable(" ".join(exc.format_message().split()))  # values typed may hold controls
    sys.stderr.write(f"{where}: error: {message}{hint}\n")
    return exc.exit_code


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point.

    Exit codes: 0 ok, 1 findings at or above ``--fail-on``, 2 usage or runtime error (one line on
    stderr), 130 interrupted, 141 stdout closed by its reader (``| head``).
    """
    if sys.stdout is None or sys.stdout.closed:
        if sys.stderr is not None:
            sys.stderr.write(
                "loopscope: error: stdout is closed; redirect it to a file or /dev/null\n"
            )
        sys.exit(2)
    from loopscope.cli.signals import install_interrupt_signals

    install_interrupt_signals()  # TERM and HUP end a run as Ctrl-C does
    try:
        code = _run(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:  # before a command's own handling: while typer, rich or it imports
        sys.stderr.write("loopscope: interrupted\n")
        code = 130
    common = sys.modules.get("loopscope.cli.common")  # not imported on the fast path
    if argv is None and common is not None and common.kept_results():
        # The console script (not an in-process caller passing argv): map/scan keep their
        # 100k-socket results; end without freeing them one by one (~60 ms at 100k sockets).
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            code = common.silence_stdout()
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _run(args: list[str]) -> int:
    from loopscope.cli.fastpath import run_fast

    fast = run_fast(args)  # `ports --json` and friends without typer/rich (same bytes)
    if fast is not None:
        return fast
    import typer

    try:  # typer >= 0.25 vendors click as typer._click; older typer uses click itself
        from typer._click import exceptions as click_exceptions
    except ImportError:  # pragma: no cover - depends on the installed typer
        from click import exceptions as click_exceptions  # type: ignore[no-redef]

    name = _command_in(args)
    if name in COMMANDS:
        only: set[str] | None = {name}
    elif name is None and not any(a in ("--help", "-h") for a in args):
        only = {"scan"}
    else:
        only = None  # --help or an unknown command: typer lists (or suggests) every command
    from loopscope.cli.validate import harden

    cli = harden(typer.main.get_command(build_app(only)))
    try:
        result = cli.main(args=args, prog_name="loopscope", standalone_mode=False)
        sys.stdout.flush()
    except click_exceptions.UsageError as exc:
        return _usage_error(exc)
    except click_exceptions.ClickException as exc:
        from loopscope.render.text import printable

        sys.stderr.write(f"loopscope: error: {printable(exc.format_message())}\n")
        return exc.exit_code
    except click_exceptions.Abort:
        sys.stderr.write("loopscope: interrupted\n")
        return 130
    except BrokenPipeError:
        from loopscope.cli.common import silence_stdout

        return silence_stdout()
    return result if isinstance(result, int) else 0
