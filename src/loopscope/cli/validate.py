"""Every command-line value checked while the command line is parsed, before any work, in one place.

:func:`harden` walks the click command built from the typer app and gives each option the type in
:data:`RULES` (a port is 1-65535, a pid 1-pid_max, a duration finite and > 0, a list parses ...);
every float option without a rule is at least finite, because ``NaN``/``Infinity`` cannot be
written in JSON (RFC 8259). Checks that involve two options (``map --dot --json``, ``simulate
--rates`` without ``--sweep``) are in :data:`CHECKS` and run before the command body. A bad value
is a click usage error: one line on stderr, exit 2 (``cli.app``).

Example: ``loopscope watch --duration nan`` ->
``loopscope watch: error: Invalid value for '--duration': nan is not a finite number``.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import socket
from collections.abc import Callable, Mapping
from typing import Any

import typer

try:  # typer >= 0.25 vendors click as typer._click; older typer uses click itself
    from typer._click import core as click_core
    from typer._click import exceptions as click_exceptions
    from typer._click import globals as click_globals
    from typer._click import types as click_types
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import core as click_core  # type: ignore[no-redef]
    from click import exceptions as click_exceptions  # type: ignore[no-redef]
    from click import globals as click_globals  # type: ignore[no-redef]
    from click import types as click_types  # type: ignore[no-redef]

from loopscope.errors import UsageError

__all__ = [
    "CHECKS",
    "DEFAULTS",
    "RULES",
    "Bounded",
    "FiniteFloat",
    "Text",
    "check_command",
    "check_probe_target",
    "harden",
    "pid_max",
]

_YEAR_S = 366 * 86400.0  # longest duration accepted: threading waits overflow near 2**63 ns


def pid_max() -> int:
    """The kernel's largest pid (``/proc/sys/kernel/pid_max``; 4194304, the 64-bit limit, if unreadable)."""
    try:
        with open("/proc/sys/kernel/pid_max", "rb") as f:
            return int(f.read(32).strip())
    except (OSError, ValueError):
        return 4_194_304


class FiniteFloat(click_types.ParamType):
    """A finite float in ``[low, high]`` (``low`` excluded when ``low_open``): never NaN or inf."""

    name = "number"

    def __init__(
        self, low: float | None = None, high: float | None = None, *, low_open: bool = False
    ) -> None:
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number", param, ctx)
            if not math.isfinite(number):
                self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            self.fail(
                f"{value!r} must be {'>' if self.low_open else '>='} {self.low:g}", param, ctx
            )
        if self.high is not None and number > self.high:
            self.fail(f"{value!r} must be <= {self.high:g}", param, ctx)
        return number


class Bounded(click_types.ParamType):
    """An integer in ``[low, high]``; ``high`` may be a function read at parse time (pid_max)."""

    name = "integer"

    def __init__(self, low: int, high: int | Callable[[], int]) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip()
            if not (text.lstrip("+-").isascii() and text.lstrip("+-").isdigit()):
                self.fail(f"{value!r} is not an integer", param, ctx)
            number = int(text)
        high = self.high() if callable(self.high) else self.high
        if not self.low <= number <= high:
            self.fail(f"{value!r} is out of range {self.low}-{high}", param, ctx)
        return number


class Text(click_types.ParamType):
    """A string passed through unchanged once ``check`` accepts it (a UsageError or ValueError
    from ``check`` is the message); empty or blank text is refused unless ``empty_ok``."""

    name = "text"

    def __init__(self, check: Callable[[str], object] | None = None, *, empty_ok: bool = False):
        self.check, self.empty_ok = check, empty_ok

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        text = str(value)
        if not text.strip() and not self.empty_ok:
            self.fail("must not be empty", param, ctx)
        if "\x00" in text:
            self.fail("must not contain a NUL byte", param, ctx)
        if self.check is not None and text.strip():
            try:
                self.check(text)
            except (UsageError, ValueError) as exc:
                self.fail(str(exc), param, ctx)
        return text


# --- checks of single values -------------------------------------------------------------------


def _one_of(*choices: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        if text not in choices:
            raise UsageError(f"{text!r} is not one of {', '.join(choices)}")

    return check


def _list_of(
    kind: Callable[[str], Any], what: str, ok: Callable[[Any], bool]
) -> Callable[[str], None]:
    """A comma list whose every element parses with ``kind`` and passes ``ok``."""

    def check(text: str) -> None:
        items = [item.strip() for item in text.split(",")]
        for item in items:
            try:
                value = kind(item)
            except ValueError:
                raise UsageError(f"bad {what} {item!r} in {text!r}") from None
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"bad {what} {item!r}: not a finite number")
            if not ok(value):
                raise UsageError(f"bad {what} {item!r} in {text!r}")

    return check


def _names_in(known: Callable[[], tuple[str, ...]], what: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        names = known()
        for item in (i.strip() for i in text.split(",")):
            if item not in names:
                raise UsageError(f"unknown {what} {item!r}: use {', '.join(names)}")

    return check


def _sim_designs() -> tuple[str, ...]:
    from loopscope.sim.scenario import DESIGNS

    return DESIGNS


def _lab_designs() -> tuple[str, ...]:
    return ("selfcall", "inprocess", "pool")  # lab.runner.LAB_DESIGNS, without importing the lab


def _bench_paths(text: str) -> None:
    from loopscope.cli.bench import parse_paths

    parse_paths(text)


def _bench_sizes(text: str) -> None:
    from loopscope.cli.bench import parse_sizes

    if any(size <= 0 for size in parse_sizes(text)):
        raise UsageError(f"bad --sizes {text!r}: sizes are > 0 bytes")


def _status_spec(text: str) -> None:
    """``200``, ``2xx``, ``200,204``, ``200-299``: each status 100-599, each range low <= high."""
    from loopscope.analysis.probe.expect import parse_expectations

    parse_expectations(status=text, headers=(), body=None, json_paths=())
    for part in text.split(","):
        bounds = [int(b) for b in part.strip().lower().replace("xx", "00").split("-")]
        if part.strip().lower().endswith("xx"):
            bounds = [bounds[0], bounds[0] + 99]
        if any(not 100 <= b <= 599 for b in bounds):
            raise UsageError(f"bad --expect-status {text!r}: statuses are 100-599")
        if bounds[0] > bounds[-1]:
            raise UsageError(f"bad --expect-status {text!r}: range {part.strip()} has low > high")


def _json_path(text: str) -> None:
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise UsageError(f"bad --expect-json {text!r}: use PATH=VALUE with a non-empty PATH")


def _header(text: str) -> None:
    from loopscope.analysis.probe.expect import parse_expectations

    parse_expectations(status=None, headers=(text,), body=None, json_paths=())


def _regex(text: str) -> None:
    from loopscope.analysis.probe.expect import parse_expectations

    parse_expectations(status=None, headers=(), body=text, json_paths=())


def _readable_file(text: str) -> None:
    """An existing file that is not a directory (``/dev/zero`` passes: reads of it are capped)."""
    import os

    if not os.path.exists(text):
        raise UsageError(f"{text} does not exist")
    if os.path.isdir(text):
        raise UsageError(f"{text} is a directory")
    if not os.access(text, os.R_OK):
        raise UsageError(f"{text} is not readable")


def _check_hostname(host: str) -> None:
    """A DNS name: labels of 1-63 characters, 253 at most, encodable as IDNA.

    Raises:
        UsageError: with what is wrong (``label 'a...' is longer than 63 characters``).
    """
    name = host.rstrip(".")
    if len(name) > 253:
        raise UsageError(f"hostname {host[:40]!r}... is longer than 253 characters")
    for label in name.split("."):
        if not label:
            raise UsageError(f"hostname {host!r} has an empty label")
        if len(label) > 63:
            raise UsageError(f"hostname label {label[:20]!r}... is longer than 63 characters")
    try:
        name.encode("idna")
    except UnicodeError as exc:
        raise UsageError(f"hostname {host!r} is not a valid name: {exc}") from None


def check_probe_target(spec: str) -> None:
    """Check a probe target as far as can be told without the network.

    Raises:
        UsageError: credentials in it (``http://user:pass@host/``), a malformed target, a scoped IPv6
            address naming an interface this host does not have, or a hostname that is not a valid
            DNS name (empty or over-long label, not IDNA-encodable).
    """
    from loopscope.analysis.probe.target import parse_target

    authority = spec.split("://", 1)[-1].split("/", 1)[0]
    if "@" in authority:
        raise UsageError(
            "credentials in the target (user:pass@) are not supported; "
            "give the host, and the expected 401 with --expect-status"
        )
    target = parse_target(spec)
    host = target.host
    if host is None:
        return
    if "%" in host:
        address, _, iface = host.partition("%")
        if not iface:
            raise UsageError(f"empty interface after '%' in {host!r}")
        if not iface.isdigit():
            try:
                socket.if_nametoindex(iface)
            except OSError:
                raise UsageError(f"unknown interface {iface!r} in {host!r}") from None
        host = address
    try:
        ipaddress.ip_address(host)
    except ValueError:
        _check_hostname(host)


# --- the table ---------------------------------------------------------------------------------

PORT = Bounded(1, 65535)
PID = Bounded(1, pid_max)
NON_EMPTY = Text()
POSITIVE_S = FiniteFloat(0.0, _YEAR_S, low_open=True)
POSITIVE_MS = FiniteFloat(0.0, _YEAR_S * 1e3, low_open=True)
NON_NEGATIVE_MS = FiniteFloat(0.0, _YEAR_S * 1e3)
_RATES = Text(_list_of(float, "rate", lambda v: 0 < v <= 1e9))
_SNAPSHOT = {
    "--netns": NON_EMPTY,
    "--source": Text(_one_of("auto", "sock_diag", "procfs", "psutil")),
}

RULES: dict[str, dict[str, click_types.ParamType]] = {
    "scan": {**_SNAPSHOT, "--port": PORT, "--pid": PID},
    "ports": {
        **_SNAPSHOT,
        "--port": PORT,
        "--pid": PID,
        "--scope": Text(_one_of("loopback", "wildcard", "own-address", "other", "host")),
        "--proto": Text(_one_of("tcp", "udp")),
    },
    "map": {**_SNAPSHOT, "--port": PORT, "--pid": PID},
    "doctor": {
        "--netns": NON_EMPTY,
        "--external": Text(),
        "--rung": Bounded(1, 3),
        "--hosts-file": Text(_readable_file),
    },
    "probe": {
        "target": Text(check_probe_target, empty_ok=True),
        "--count": Bounded(1, 10_000),
        "--timeout": FiniteFloat(0.0, 60.0, low_open=True),
        "--expect-status": Text(_status_spec),
        "--expect-header": Text(_header),
        "--expect-body": Text(_regex, empty_ok=True),
        "--expect-json": Text(_json_path),
    },
    "watch": {
        "--duration": POSITIVE_S,
        "--interval": POSITIVE_S,
        "--refresh": POSITIVE_S,
        "--pid": PID,
        "--port": PORT,
        "--netns": NON_EMPTY,
        "--nice": Bounded(0, 19),
    },
    "bench": {
        "--paths": Text(_bench_paths),
        "--sizes": Text(_bench_sizes),
        "--count": Bounded(1, 100_000_000),
        "--warmup": Bounded(0, 100_000_000),
        "--duration-s": POSITIVE_S,
        "--throughput-s": POSITIVE_S,
        "--compare-s": Bounded(1, 3600),
        "--plot": NON_EMPTY,
    },
    "simulate": {
        "--design": Text(_names_in(_sim_designs, "design")),
        "--rate": FiniteFloat(0.0, 1e9, low_open=True),
        "--sweep": Text(_one_of("lambda")),
        "--rates": _RATES,
        "--instances": Text(_list_of(int, "instance count", lambda v: 1 <= v <= 1000)),
        "--workers": Bounded(1, 10_000),
        "--pool-workers": Bounded(1, 10_000),
        "--fanout": Bounded(0, 1000),
        "--work-ms": NON_NEGATIVE_MS,
        "--child-ms": NON_NEGATIVE_MS,
        "--sigma": FiniteFloat(0.0, 20.0, low_open=True),
        "--queue-limit": Bounded(0, 100_000_000),
        "--queue-timeout-ms": NON_NEGATIVE_MS,
        "--call-timeout-ms": NON_NEGATIVE_MS,
        "--request-timeout-ms": NON_NEGATIVE_MS,
        "--hop-us": FiniteFloat(0.0, 1e9),
        "--calibrate": NON_EMPTY,
        "--requests": Bounded(1, 100_000_000),
        "--engine": Text(_one_of("fast", "simpy")),
        "--seed": Bounded(0, 2**32 - 1),
    },
    "lab": {
        "--compare": Text(_names_in(_lab_designs, "design")),
        "--rates": _RATES,
        "--server": Text(_one_of("gunicorn", "waitress")),
        "--threads": Bounded(1, 1000),
        "--pool-threads": Bounded(1, 1000),
        "--work-ms": NON_NEGATIVE_MS,
        "--child-ms": NON_NEGATIVE_MS,
        "--fanout": Bounded(1, 100),
        "--duration": POSITIVE_S,
        "--call-timeout-ms": POSITIVE_MS,
        "--timeout": POSITIVE_S,
        "--max-requests": Bounded(1, 10_000_000),
    },
    "traces": {
        "--listen": NON_EMPTY,
        "--duration": POSITIVE_S,
        "--sample-ratio": FiniteFloat(0.0, 1.0, low_open=True),
        "--max-spans": Bounded(1, 100_000_000),
    },
    "exporter": {
        "--listen": NON_EMPTY,
        "--textfile": NON_EMPTY,
        "--interval": POSITIVE_S,
        "--max-client-apps": Bounded(1, 1_000_000),
    },
}
"""command -> option (or argument name) -> the type that checks it."""

DEFAULTS: dict[str, click_types.ParamType] = {"--port": PORT, "--pid": PID, "--netns": NON_EMPTY}
"""Rules for an option of these names on any command (a new command gets them without an entry)."""


# --- checks across options ---------------------------------------------------------------------


def _snapshot_options(params: Mapping[str, Any]) -> None:
    if params.get("netns") is not None and params.get("all_netns"):
        raise UsageError("use --netns or --all-netns, not both")
    if params.get("source") == "psutil" and (
        params.get("netns") is not None or params.get("all_netns")
    ):
        raise UsageError(
            "--source psutil reads only this namespace: drop --netns/--all-netns "
            "or use --source sock_diag or procfs"
        )


def _map(params: Mapping[str, Any]) -> None:
    _snapshot_options(params)
    if params.get("dot") and params.get("json_out"):
        raise UsageError("use --dot or --json, not both")


def _simulate(params: Mapping[str, Any]) -> None:
    if params.get("rates") is not None and params.get("sweep") is None:
        raise UsageError("--rates needs --sweep lambda (without it --rate gives the one rate)")
    if params.get("plot") is not None and params.get("sweep") is None:
        raise UsageError("--plot needs --sweep lambda")


def _traces(params: Mapping[str, Any]) -> None:
    if params.get("dot") and params.get("json_out"):
        raise UsageError("use --dot or --json, not both")


CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "scan": _snapshot_options,
    "ports": _snapshot_options,
    "map": _map,
    "doctor": _snapshot_options,
    "simulate": _simulate,
    "traces": _traces,
}
"""command -> a check of its parsed options taken together (click parameter names)."""


def check_command(name: str, params: Mapping[str, Any]) -> None:
    """Run the cross-option check of command ``name`` on its parsed parameters.

    Raises:
        UsageError: two options that do not go together.
    """
    check = CHECKS.get(name)
    if check is not None:
        check(params)


def _checked(name: str, callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            check_command(name, kwargs)
        except UsageError as exc:
            raise click_exceptions.UsageError(
                str(exc), ctx=click_globals.get_current_context(silent=True)
            ) from None
        return callback(*args, **kwargs)

    return run


def harden(command: click_core.Command) -> click_core.Command:
    """Give every option of every subcommand of ``command`` its checking type (in place).

    Returns:
        ``command``, for chaining.
    """
    commands: Mapping[str, click_core.Command] = getattr(command, "commands", {})
    for name, sub in commands.items():
        rules = RULES.get(name, {})
        for param in sub.params:
            keys = [*param.opts, param.name or ""]
            rule = next((rules[k] for k in keys if k in rules), None)
            if rule is None:
                rule = next((DEFAULTS[k] for k in param.opts if k in DEFAULTS), None)
            if rule is None and isinstance(param.type, click_types.FloatParamType):
                rule = FiniteFloat()
            if rule is not None:
                param.type = rule
        if sub.callback is not None and name in CHECKS:
            sub.callback = _checked(name, sub.callback)
    return command


def hardened_app(only: Any = None) -> click_core.Command:
    """The click command of :func:`loopscope.cli.app.build_app` with every value checked."""
    from loopscope.cli.app import build_app

    return harden(typer.main.get_command(build_app(only)))
