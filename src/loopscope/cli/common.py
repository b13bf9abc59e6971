"""Helpers every CLI command shares: the error boundary, JSON output, exit codes, the console.

Exit codes (DESIGN.md): 0 ok, 1 a finding at or above ``--fail-on``, 2 usage or runtime error.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable
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
    "JsonOption",
    "cli_errors",
    "console",
    "emit_json",
    "err_console",
    "exit_code_for",
    "silence_stdout",
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


def console() -> Console:
    """The stdout console; 100 columns when not a terminal so tables stay readable in pipes.

    A reader that goes away (``| head``) raises BrokenPipeError up to ``cli.app.main``, which exits
    quietly (rich's own handling would exit 1, the code for "findings present").
    """
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(32, "stdout closed by its reader")

    if sys.stdout.isatty():
        return _Console()
    return _Console(width=100)


def err_console() -> Console:
    """The stderr console."""
    from rich.console import Console

    return Console(stderr=True)


def cli_errors(fn: F) -> F:
    """Decorate a command body: a LoopscopeError or any other exception becomes one line on stderr
    and exit code 2, never a traceback (``LOOPSCOPE_DEBUG=1`` re-raises)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import os

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
            sys.stderr.write(f"loopscope: error: {exc}\n")
            raise typer.Exit(EXIT_ERROR) from None
        except Exception as exc:  # the one place a broad except is allowed: the CLI boundary
            if os.environ.get("LOOPSCOPE_DEBUG"):
                raise
            sys.stderr.write(f"loopscope: internal error: {type(exc).__name__}: {exc}\n")
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper  # type: ignore[return-value]


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


def emit_json(command: str, body: dict[str, Any]) -> None:
    """Print ``body`` as one JSON document with ``schema_version`` and ``command``."""
    sys.stdout.write(json.dumps(json_document(command, body), indent=2) + "\n")


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
