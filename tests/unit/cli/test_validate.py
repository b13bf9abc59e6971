"""cli/validate: the checking types, probe targets, cross-option checks, and the --port/--pid
snapshot filter of cli/options that the checked values feed."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopscope.cli.validate import (
    Bounded,
    FiniteFloat,
    Text,
    check_command,
    check_probe_target,
    hardened_app,
    pid_max,
)
from loopscope.errors import UsageError

try:
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e309", "x", "", " "])
def test_finite_float_refuses(text: str) -> None:
    with pytest.raises(click_exceptions.BadParameter):
        FiniteFloat().convert(text, None, None)


def test_finite_float_bounds() -> None:
    positive = FiniteFloat(0.0, 10.0, low_open=True)
    assert positive.convert("2.5", None, None) == 2.5
    for bad in ("0", "-1", "10.5"):
        with pytest.raises(click_exceptions.BadParameter):
            positive.convert(bad, None, None)
    assert FiniteFloat(0.0).convert("0", None, None) == 0.0


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_finite_float_accepts_exactly_the_finite(value: float) -> None:
    try:
        got = FiniteFloat().convert(repr(value), None, None)
    except click_exceptions.BadParameter:
        assert not math.isfinite(value)
    else:
        assert got == value


def test_bounded_int_and_pid_max() -> None:
    port = Bounded(1, 65535)
    assert port.convert("65535", None, None) == 65535
    for bad in ("0", "65536", "-1", "1.5", "¹", "٣", "", "0x10"):
        with pytest.raises(click_exceptions.BadParameter):
            port.convert(bad, None, None)
    pid = Bounded(1, pid_max)
    with pytest.raises(click_exceptions.BadParameter, match="out of range"):
        pid.convert(str(pid_max() + 1), None, None)
    assert pid_max() >= 32768


def test_text_refuses_empty_and_nul_and_runs_its_check() -> None:
    with pytest.raises(click_exceptions.BadParameter, match="empty"):
        Text().convert("  ", None, None)
    with pytest.raises(click_exceptions.BadParameter, match="NUL"):
        Text().convert("a\x00b", None, None)
    assert Text(empty_ok=True).convert("", None, None) == ""

    def no_x(text: str) -> None:
        if "x" in text:
            raise UsageError("no x please")

    with pytest.raises(click_exceptions.BadParameter, match="no x please"):
        Text(no_x).convert("box", None, None)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("http://user:pass@127.0.0.1:41001/", "credentials"),
        ("[fe80::1%nosuchif]:41050", "unknown interface 'nosuchif'"),
        ("a" * 64 + ".example:80", "longer than 63"),
        ("a..b", "empty label"),
        (".".join(["abcdefghij"] * 24), "longer than 253"),
        ("ü" * 60 + ".example", "not a valid name"),
        ("localhost:99999", "bad port"),
    ],
)
def test_probe_targets_refused(target: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        check_probe_target(target)


@pytest.mark.parametrize(
    "target",
    ["", ":8080", "localhost:8080/health", "[::1]:443", "[fe80::1%lo]:80", "bücher.example"],
)
def test_probe_targets_accepted(target: str) -> None:
    check_probe_target(target)


def test_cross_option_checks() -> None:
    with pytest.raises(UsageError, match="--dot or --json"):
        check_command("map", {"dot": True, "json_out": True})
    with pytest.raises(UsageError, match="needs --sweep"):
        check_command("simulate", {"rates": "1,2", "sweep": None})
    with pytest.raises(UsageError, match="psutil reads only this namespace"):
        check_command("ports", {"source": "psutil", "netns": "blue", "all_netns": False})
    check_command("simulate", {"rates": "1,2", "sweep": "lambda"})
    check_command("nosuchcommand", {})


def test_hardened_app_refuses_at_parse_time() -> None:
    app = hardened_app({"watch"})
    watch = app.commands["watch"]  # type: ignore[attr-defined]
    with pytest.raises(click_exceptions.BadParameter):
        watch.make_context("watch", ["--duration", "nan"])
    ctx = watch.make_context("watch", ["--duration", "2.5", "--port", "80", "--port", "443"])
    assert ctx.params["duration"] == 2.5 and tuple(ctx.params["port"]) == (80, 443)
