"""Helpers every CLI command shares: the error boundary, JSON output, exit codes, the console.

Exit codes (DESIGN.md): 0 ok, 1 a finding at or above ``--fail-on``, 2 usage or runtime error.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from loopscope.errors import LoopscopeError
from loopscope.model import Finding, Severity
from loopscope.render.jsonable import json_document

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_FINDINGS",
    "EXIT_OK",
    "FailOnOption",
    "FormatOption",
    "JsonOption",
    "WideOption",
    "cli_errors",
    "console",
    "emit_json",
    "err_console",
    "exit_code_for",
    "keep_until_exit",
    "kept_results",
    "print_read_summary",
    "silence_stdout",
    "slow_read_notice",
]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `cmd | head` when cmd is killed

JsonOption = typer.Option(False, "--json", help="Print one JSON document (with schema_version).")


def _check_fail_on(value: str) -> str:
    """Validate ``--fail-on`` while the command line is parsed, before any work starts."""
    parse_fail_on(value)
    return value


FailOnOption = typer.Option(
    "high",
    "--fail-on",
    callback=_check_fail_on,
    help="Exit 1 when a finding has this severity or higher: info, low, medium, high, critical, never.",
)

F = TypeVar("F", bound=Callable[..., Any])


class _OutputSettings:
    """``--wide`` and ``--format`` of the command being run, recorded when the command line is
    parsed, so every console() of the command (and its helpers) draws the same way."""

    wide = False
    fmt = "table"


def _record_wide(value: bool) -> bool:
    _OutputSettings.wide = bool(value)
    return value


def _check_format(value: str) -> str:
    """Validate ``--format`` while the command line is parsed, and record it for console()."""
    if value not in ("table", "tsv"):
        raise typer.BadParameter(f"unknown format {value!r}: use table or tsv")
    _OutputSettings.fmt = value
    return value


WideOption = typer.Option(
    False,
    "--wide",
    callback=_record_wide,
    help="Never shorten a column (process labels, evidence) to fit the terminal.",
)
FormatOption = typer.Option(
    "table",
    "--format",
    callback=_check_format,
    help="table, or tsv: a header of field names, then one tab-separated row per line (--json wins).",
)


def console(*, wide: bool | None = None, fmt: str | None = None) -> Console:
    """The stdout console (a :class:`loopscope.cli.tables.TableConsole`).

    In a terminal, tables fit its width (``COLUMNS`` when set), shortening labels first; in a pipe
    without ``COLUMNS``, tables have their natural width, one line per row. ``wide``: never shorten.
    ``fmt="tsv"``: tables go to stdout as TSV, everything else to stderr. Both default to the
    command's ``--wide`` / ``--format``.
    """
    import os

    from loopscope.cli.tables import TableConsole

    wide = _OutputSettings.wide if wide is None else wide
    if (_OutputSettings.fmt if fmt is None else fmt) == "tsv":
        return TableConsole(stderr=True, tsv=True, wide=True)
    columns = os.environ.get("COLUMNS", "")
    natural = not (sys.stdout is not None and sys.stdout.isatty()) and not columns.isdigit()
    return TableConsole(wide=wide, natural=natural)


def err_console() -> Console:
    """The stderr console (escapes control characters like the stdout console)."""
    from loopscope.cli.tables import TableConsole

    return TableConsole(stderr=True)


_KEPT: list[object] = []


def keep_until_exit(*objects: object) -> None:
    """Hold a command's big results (snapshots, talk maps) until the process ends.

    Freeing a 100k-socket snapshot object by object costs ~60 ms; :func:`loopscope.cli.app.main`
    (the console script) flushes stdout and stderr and ends the process without that teardown when a
    command kept something. In-process callers (tests, ``typer.testing.CliRunner``) are unaffected:
    every command run through :func:`cli_errors` drops what the previous run kept.
    """
    _KEPT.extend(objects)


def kept_results() -> bool:
    """True when the last command run through :func:`cli_errors` kept results for the exit."""
    return bool(_KEPT)


def cli_errors(fn: F) -> F:
    """Decorate a command body: a LoopscopeError or any other exception becomes one line on stderr
    and exit code 2, never a traceback (``LOOPSCOPE_DEBUG=1`` re-raises)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import os

        _KEPT.clear()
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BrokenPipeError:
            raise typer.Exit(silence_stdout()) from None
        except KeyboardInterrupt:
            sys.stderr.write("loopscope: interrupted\n")
            raise typer.Exit(130) from None
        except LoopscopeError as exc:
            if os.environ.get("LOOPSCOPE_DEBUG"):
                raise
            sys.stderr.write(f"loopscope: error: {_printable(str(exc))}\n")
            raise typer.Exit(EXIT_ERROR) from None
        except Exception as exc:  # the one place a broad except is allowed: the CLI boundary
            if os.environ.get("LOOPSCOPE_DEBUG"):
                raise
            sys.stderr.write(
                f"loopscope: internal error: {type(exc).__name__}: {_printable(str(exc))}\n"
            )
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper  # type: ignore[return-value]


def _printable(text: str) -> str:
    from loopscope.render.text import printable

    return printable(text)


def silence_stdout() -> int:
    """The reader of stdout went away (``| head``): point stdout at /dev/null so nothing more fails
    on it, and return the status to exit with, :data:`EXIT_BROKEN_PIPE` (not 1, "findings present")."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is already unusable; the exit status still says what happened
    return EXIT_BROKEN_PIPE


def emit_json(command: str, body: dict[str, Any], *, large: bool = False) -> None:
    """Print ``body`` as one JSON document with ``schema_version`` and ``command``.

    Args:
        command: the command name, the document's ``command`` field.
        body: the command's result (converted with :func:`~loopscope.render.jsonable.to_jsonable`).
        large: the document may be many megabytes (``map --json --connections``). It is then
            encoded with orjson when installed (same 2-space layout, 5-20x faster than the
            stdlib's pure-Python indenting encoder; non-ASCII is written as UTF-8, not ``\\u``
            escapes), else with the stdlib. Default documents always use the stdlib encoder, so
            their bytes do not depend on what is installed.
    """
    doc = json_document(command, body)
    if large:
        try:
            import orjson
        except ImportError:
            pass
        else:
            data = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
            buffer = getattr(sys.stdout, "buffer", None)
            if buffer is None:  # a text-only stream (tests' capture)
                sys.stdout.write(data.decode())
            else:
                sys.stdout.flush()
                buffer.write(data)
                buffer.flush()
            return
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")  # = format_json_document(command, body)


@contextlib.contextmanager
def slow_read_notice(
    what: str = "reading sockets and their processes", after_s: float = 1.0
) -> Iterator[None]:
    """Show ``loopscope: reading sockets ...`` on stderr when the block takes longer than ``after_s``
    (100k sockets take about a second), and erase it when the block ends. Only on a terminal: pipes
    and logs get nothing."""
    if not sys.stderr.isatty():
        yield
        return
    import threading

    shown = threading.Event()

    def show() -> None:
        sys.stderr.write(f"loopscope: {what} ...")
        sys.stderr.flush()
        shown.set()

    timer = threading.Timer(after_s, show)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        if shown.is_set():
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


def print_read_summary(command: str, snapshots: Sequence[Any], started_ns: int) -> None:
    """One line on stderr: how many sockets were read, how long the read took and the whole command.

    Example: ``loopscope map: 100,012 sockets in 1 namespace read in 0.84 s; 1.02 s in all``.

    Args:
        command: the command name.
        snapshots: the snapshots read (``sockets`` and ``duration_ns`` are used).
        started_ns: ``time.perf_counter_ns()`` when the command started.
    """
    sockets = sum(len(s.sockets) for s in snapshots)
    read_s = sum(s.duration_ns or 0 for s in snapshots) / 1e9
    total_s = (time.perf_counter_ns() - started_ns) / 1e9
    spaces = "namespace" if len(snapshots) == 1 else "namespaces"
    noun = "socket" if sockets == 1 else "sockets"
    sys.stderr.write(
        f"loopscope {command}: {sockets:,} {noun} in {len(snapshots)} {spaces} read in "
        f"{read_s:.2f} s; {total_s:.2f} s in all\n"
    )


def parse_fail_on(value: str) -> Severity | None:
    """``"high"`` -> Severity.HIGH; ``"never"`` -> None.

    Raises:
        typer.BadParameter: unknown severity.
    """
    if value.lower() == "never":
        return None
    try:
        return Severity(value.lower())
    except ValueError:
        raise typer.BadParameter(
            f"unknown severity {value!r}: use info, low, medium, high, critical or never"
        ) from None


def exit_code_for(findings: Iterable[Finding], fail_on: str) -> int:
    """0, or 1 when any finding's severity is at or above ``fail_on``."""
    threshold = parse_fail_on(fail_on)
    if threshold is None:
        return EXIT_OK
    if any(f.severity.rank >= threshold.rank for f in findings):
        return EXIT_FINDINGS
    return EXIT_OK
