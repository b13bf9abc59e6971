"""Every command and every option of the real command line, fed hostile values by hypothesis.

What must hold (issue #15, "How to keep it fixed"):

* parsing a command line either accepts it or gives a usage error (click's UsageError, exit 2),
  never another exception, and fast: every check happens before any work;
* an accepted float is finite (NaN/inf cannot be written as JSON, RFC 8259);
* a command that runs ends with 0, 1 or 2, without a traceback or "internal error", and with
  ``--json`` its stdout is strict JSON (``parse_constant`` refuses NaN/Infinity).

Parsing is tried on every command (``hardened_app``, the very click command ``loopscope`` runs);
the full runs are in-process through :func:`loopscope.cli.app.main` on the commands that finish in
well under a second (scan, ports, map, doctor, simulate with few requests, probe on a closed port).
``perf/fuzz_cli.py`` runs the same properties for as long as asked.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import signal
import time
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopscope.cli import validate
from loopscope.cli.app import main
from loopscope.cli.validate import RULES, FiniteFloat, check_command, hardened_app

try:
    from typer._click import core as click_core
    from typer._click import exceptions as click_exceptions
    from typer._click import types as click_types
except ImportError:  # pragma: no cover
    from click import core as click_core  # type: ignore[no-redef]
    from click import exceptions as click_exceptions  # type: ignore[no-redef]
    from click import types as click_types  # type: ignore[no-redef]

pytestmark = pytest.mark.linux

APP = hardened_app()
COMMANDS: dict[str, click_core.Command] = dict(APP.commands)  # type: ignore[attr-defined]

# Values people and attackers type: empty, signs, zero, huge, NaN/inf, unicode, control
# characters, markup brackets, option look-alikes, paths that never end, hostile targets.
SPECIAL = [
    "",
    " ",
    "-1",
    "0",
    "1",
    "2",
    "65535",
    "65536",
    "-0",
    "+5",
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "1e309",
    "1e-320",
    "99999999999999999999999",
    "4294967296",
    "1.5",
    "0x10",
    "1_000",
    "¹",
    "٣",
    "[/x]",
    "[bold]x[/bold]",
    "\x1b[2J\x1b[31mX",
    "\t",
    "\n",
    "é",
    "ü.example",
    "a" * 300,
    "💥",
    "1,2",
    ",",
    ",,",
    "=1",
    "a=",
    "300-200",
    "2xx",
    "999",
    "-",
    "--json",
    "/dev/zero",
    "/nonexistent",
    "/",
    "127.0.0.1:1",
    "[::1]:1",
    "http://u:p@127.0.0.1:1/",
    "[fe80::1%nosuchif]:1",
    "a..b",
    "x" * 64 + ".example",
    "tcp://:0",
    "https://[::1",
    "never",
    "lambda",
    "fast",
    "simpy",
    "selfcall",
    "inprocess,pool",
    "tcp4,unix",
    "1k,64KiB",
    "host",
]
VALUES = st.one_of(
    st.sampled_from(SPECIAL),
    st.text(max_size=24).filter(lambda s: "\x00" not in s),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def _valid(param: click_core.Parameter) -> st.SearchStrategy[str]:
    """Values the option's own type accepts, so that whole runs also happen (not only refusals)."""
    kind = param.type
    if isinstance(kind, validate.Bounded):
        high = kind.high() if callable(kind.high) else kind.high
        return st.integers(kind.low, min(high, kind.low + 2000)).map(str)
    if isinstance(kind, FiniteFloat):
        low = kind.low if kind.low is not None else -1e6
        high = min(kind.high if kind.high is not None else 1e6, low + 1e6)
        return st.floats(low, high, exclude_min=kind.low_open).map(repr)
    choices = getattr(kind, "choices", None)
    if choices:
        return st.sampled_from([str(getattr(c, "value", c)) for c in choices])
    if param.name == "fail_on":
        return st.sampled_from(["info", "low", "medium", "high", "critical", "never", "HIGH"])
    return VALUES


def _options(cmd: click_core.Command) -> list[click_core.Parameter]:
    return [p for p in cmd.params if p.name not in ("help",)]


def _is_flag(param: click_core.Parameter) -> bool:
    return bool(getattr(param, "is_flag", False)) or getattr(param, "count", False)


def _arg_for(param: click_core.Parameter, value: str) -> list[str]:
    if getattr(param, "param_type_name", "") == "argument":
        return ["--", value]
    if _is_flag(param):
        return [param.opts[0]]
    return (
        [f"{param.opts[0]}={value}"] if param.opts[0].startswith("--") else [param.opts[0], value]
    )


def _parse(name: str, args: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """("accepted", params) or ("usage", {}); anything else raised is a failure of the test."""
    cmd = COMMANDS[name]
    try:
        ctx = cmd.make_context(name, list(args))
        with ctx:
            check_command(name, ctx.params)
    except click_exceptions.UsageError:
        return "usage", {}
    except validate.UsageError:
        return "usage", {}
    except click_exceptions.Exit:
        return "accepted", {}
    return "accepted", dict(ctx.params)


def _cases() -> st.SearchStrategy[tuple[str, list[str]]]:
    """A command and 1-3 of its options with hostile values (a repeated option included)."""

    @st.composite
    def case(draw: st.DrawFn) -> tuple[str, list[str]]:
        name = draw(st.sampled_from(sorted(COMMANDS)))
        params = _options(COMMANDS[name])
        args: list[str] = []
        for param in draw(st.lists(st.sampled_from(params), min_size=1, max_size=3)):
            args += _arg_for(param, draw(st.one_of(VALUES, _valid(param))))
        return name, args

    return case()


def test_every_option_has_a_checking_type() -> None:
    """Every float is finite-checked; every rule names an option that exists (a renamed option
    cannot silently lose its check)."""
    for name, cmd in COMMANDS.items():
        names = {k for p in cmd.params for k in (*p.opts, p.name)}
        for key in RULES.get(name, {}):
            assert key in names, f"RULES[{name!r}] names {key!r}, which {name} does not have"
        for param in cmd.params:
            if isinstance(param.type, click_types.FloatParamType):
                pytest.fail(f"{name} {param.opts}: a float without the finite check")
            if {"--port", "--pid"} & set(param.opts):
                assert isinstance(param.type, validate.Bounded), (name, param.opts)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(_cases())
def test_parsing_accepts_or_gives_a_usage_error_quickly(case: tuple[str, list[str]]) -> None:
    name, args = case
    t0 = time.monotonic()
    outcome, params = _parse(name, args)
    assert time.monotonic() - t0 < 2.0, f"parsing {name} {args} took too long"
    for param in COMMANDS[name].params:
        value = params.get(param.name or "")
        if outcome == "accepted" and isinstance(param.type, FiniteFloat) and value is not None:
            assert math.isfinite(value), (name, args, value)


def _run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code: int | None = 0
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        finally:
            for signum, handler in handlers.items():  # main() makes TERM/HUP raise: undo here
                signal.signal(signum, handler)
    return int(code or 0), out.getvalue(), err.getvalue()


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def _assert_clean_end(args: list[str], code: int, stdout: str, stderr: str) -> None:
    assert code in (0, 1, 2), (args, code, stderr[-500:])
    assert "Traceback" not in stderr, (args, stderr[-2000:])
    assert "internal error" not in stderr, (args, stderr[-500:])
    if code == 2:
        assert len(stderr.strip().splitlines()) >= 1, args
    if "--json" in args and stdout.strip():
        json.loads(stdout, parse_constant=_refuse_constant)


# Commands cheap enough to run whole, with the options fuzzed on them (options that multiply the
# work, such as simulate --requests, are fixed small instead of drawn).
RUNS: dict[str, tuple[list[str], list[str]]] = {
    "ports": (
        ["--json", "--no-processes"],
        [
            "--port",
            "--pid",
            "--scope",
            "--proto",
            "--netns",
            "--source",
            "--fail-on",
            "--all-netns",
        ],
    ),
    "scan": (["--json", "--no-processes"], ["--netns", "--source", "--fail-on", "--port", "--pid"]),
    "map": (
        ["--json", "--no-processes"],
        ["--netns", "--source", "--fail-on", "--dot", "--port", "--pid"],
    ),
    "doctor": (
        ["--json", "--rung", "1", "--no-firewall", "--no-processes"],
        ["--external", "--hosts-file", "--fail-on", "--netns"],
    ),
    "simulate": (
        ["--json", "--requests", "200", "--design", "selfcall"],
        [
            "--rate",
            "--work-ms",
            "--child-ms",
            "--hop-us",
            "--sigma",
            "--seed",
            "--workers",
            "--fanout",
            "--queue-limit",
            "--queue-timeout-ms",
            "--call-timeout-ms",
            "--request-timeout-ms",
            "--service",
            "--fail-on",
            "--sequential",
            "--constant-arrivals",
        ],
    ),
    "probe": (
        ["--json", "--no-diagnose", "--timeout", "0.5"],
        ["--expect-status", "--expect-header", "--expect-body", "--expect-json", "--fail-on"],
    ),
}


@st.composite
def _run_cases(draw: st.DrawFn) -> list[str]:
    name = draw(st.sampled_from(sorted(RUNS)))
    fixed, fuzzed = RUNS[name]
    by_opt = {p.opts[0]: p for p in COMMANDS[name].params if p.opts}
    args = [name, *fixed]
    for opt in draw(st.lists(st.sampled_from(fuzzed), min_size=1, max_size=2, unique=True)):
        param = by_opt.get(opt)
        if param is None:
            continue  # an option a command does not have yet: nothing to try
        # two parts valid to one hostile, so that most runs go all the way
        args += _arg_for(param, draw(st.one_of(_valid(param), _valid(param), VALUES)))
    if name == "probe":
        args += ["--", "127.0.0.1:9"]  # discard port: closed here, refused at once
    return args


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(_run_cases())
def test_whole_runs_end_cleanly_with_strict_json(args: list[str]) -> None:
    t0 = time.monotonic()
    code, stdout, stderr = _run_cli(args)
    _assert_clean_end(args, code, stdout, stderr)
    if code == 2 and "error: Invalid value" in stderr:
        assert stdout == "" and time.monotonic() - t0 < 5.0, args  # refused before any work


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "--rate", "nan", "--json"],
        ["simulate", "--work-ms", "nan", "--json"],
        ["simulate", "--hop-us", "inf", "--json"],
        ["watch", "--duration", "nan"],
        ["watch", "--interval", "nan"],
        ["watch", "--port", "0"],
        ["watch", "--port", "65536"],
        ["watch", "--pid", "-1"],
        ["watch", "--pid", "999999999"],
        ["lab", "--compare", ""],
        ["lab", "--max-requests", "0"],
        ["lab", "--work-ms", "-1"],
        ["lab", "--rates", "nan"],
        ["bench", "--duration-s", "nan"],
        ["probe", "--expect-status", "999"],
        ["probe", "--expect-status", "300-200"],
        ["probe", "--expect-json", "=1"],
        ["map", "--dot", "--json"],
        ["simulate", "--rates", "1,2"],
        ["doctor", "--external", ""],
        ["doctor", "--hosts-file", "/nonexistent"],
        ["scan", "--netns", ""],
        ["ports", "--source", "psutil", "--netns", "x"],
        ["scan", "--source", "psutil", "--all-netns"],
        ["simulate", "--design", ""],
        ["simulate", "--seed", "-1"],
        ["probe", "--", "[fe80::1%nosuchif]:41050"],
        ["probe", "--", "http://user:pass@127.0.0.1:41001/"],
        ["probe", "--", "a" * 64 + ".example"],
        ["probe", "--", "a..b"],
    ],
)
def test_issue_15_values_are_refused_up_front(args: list[str]) -> None:
    """Each value issue #15 found accepted, or reported as an internal error: now one line, exit 2,
    nothing on stdout."""
    t0 = time.monotonic()
    code, stdout, stderr = _run_cli(args)
    assert code == 2, (args, stdout[:300], stderr)
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and "error:" in stderr, stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    assert time.monotonic() - t0 < 5.0
