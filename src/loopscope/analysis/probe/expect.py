"""Expectations that turn a probe into a check (pure): status, header, body regex, JSON path value.

Example:
    >>> e = parse_expectations(status="2xx", headers=["content-type: application/json"],
    ...                        body=None, json_paths=["status=ok"])
    >>> [x.text for x in e]
    ['status 2xx', 'header content-type: application/json', 'json status=ok']
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loopscope.errors import UsageError
from loopscope.model.probe import AddressResult, HttpInfo

__all__ = [
    "Expectation",
    "ExpectationResult",
    "check_http",
    "check_results",
    "json_path",
    "parse_expectations",
]

_MISSING = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """One expectation."""

    kind: str
    """``status``, ``header``, ``body`` or ``json``."""
    text: str
    """As the user wrote it, for messages."""
    statuses: tuple[tuple[int, int], ...] = ()
    """status: accepted inclusive ranges (``2xx`` -> (200, 299))."""
    name: str | None = None
    """header name (lower case) or JSON path."""
    value: Any = None
    """header value (None: presence only), JSON value."""
    pattern: re.Pattern[str] | None = None
    """body regex."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectationResult:
    """One expectation judged on one address."""

    expectation: str
    """The expectation text."""
    target: str
    """The candidate label."""
    ok: bool
    """It held on every attempt."""
    got: str
    """What was seen (first failing attempt, or the first attempt)."""


def _status(spec: str) -> tuple[tuple[int, int], ...]:
    out = []
    for part in spec.split(","):
        part = part.strip().lower()
        if re.fullmatch(r"[1-5]xx", part):
            base = int(part[0]) * 100
            out.append((base, base + 99))
        elif re.fullmatch(r"\d{3}", part):
            out.append((int(part), int(part)))
        elif re.fullmatch(r"\d{3}-\d{3}", part):
            lo, hi = part.split("-")
            out.append((int(lo), int(hi)))
        else:
            raise UsageError(f"bad --expect-status {spec!r}: use 200, 2xx, 200,204 or 200-299")
    return tuple(out)


def parse_expectations(
    *, status: str | None, headers: Sequence[str], body: str | None, json_paths: Sequence[str]
) -> list[Expectation]:
    """Parse the --expect-* options.

    Args:
        status: ``200``, ``2xx``, ``200,204``, ``200-299``.
        headers: ``Name`` (present) or ``Name: value`` / ``Name=value`` (equal, value case-sensitive).
        body: a Python regex searched in the body (decoded as UTF-8 with replacement).
        json_paths: ``a.b.0.c=VALUE``; VALUE is JSON when it parses (``3``, ``true``, ``"x"``), else a string.

    Raises:
        UsageError: malformed expectation or regex.
    """
    out: list[Expectation] = []
    if status:
        out.append(Expectation(kind="status", text=f"status {status}", statuses=_status(status)))
    for h in headers:
        m = re.match(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*(?:[:=]\s*(.*))?$", h)
        if not m:
            raise UsageError(f"bad --expect-header {h!r}: use 'Name' or 'Name: value'")
        name, value = m.group(1).lower(), m.group(2)
        out.append(
            Expectation(
                kind="header",
                text=f"header {name}" + (f": {value}" if value is not None else ""),
                name=name,
                value=value.strip() if value is not None else None,
            )
        )
    if body is not None:
        try:
            out.append(Expectation(kind="body", text=f"body ~ /{body}/", pattern=re.compile(body)))
        except re.error as exc:
            raise UsageError(f"bad --expect-body regex {body!r}: {exc}") from None
    for jp in json_paths:
        if "=" not in jp:
            raise UsageError(
                f"bad --expect-json {jp!r}: use PATH=VALUE, e.g. status=ok or items.0.id=3"
            )
        path, raw = jp.split("=", 1)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.append(
            Expectation(kind="json", text=f"json {path}={raw}", name=path.strip(), value=value)
        )
    return out


def json_path(doc: Any, path: str) -> Any:
    """Follow ``a.b.0.c`` (or ``a.b[0].c``) into a JSON document; a missing step returns a sentinel
    that equals nothing.

    Example: ``json_path({"items": [{"id": 3}]}, "items.0.id") == 3``.
    """
    cur = doc
    for step in [s for s in re.split(r"\.|\[(\d+)\]", path) if s]:
        if isinstance(cur, dict) and step in cur:
            cur = cur[step]
        elif (
            isinstance(cur, list)
            and step.lstrip("-").isdigit()
            and -len(cur) <= int(step) < len(cur)
        ):
            cur = cur[int(step)]
        else:
            return _MISSING
    return cur


def check_http(exp: Expectation, info: HttpInfo | None) -> tuple[bool, str]:
    """Judge one expectation on one response; returns (ok, what was seen)."""
    if info is None:
        return False, "no HTTP response"
    if exp.kind == "status":
        return any(lo <= info.status <= hi for lo, hi in exp.statuses), str(info.status)
    if exp.kind == "header":
        got = info.header(exp.name or "")
        if got is None:
            return False, "absent"
        return (exp.value is None or got.strip() == exp.value), got
    text = info.body.decode("utf-8", "replace")
    if exp.kind == "body":
        assert exp.pattern is not None
        m = exp.pattern.search(text)
        return m is not None, (
            f"matched {m.group(0)[:60]!r}" if m else f"{info.body_bytes} bytes, no match"
        )
    try:
        doc = json.loads(text)
    except ValueError:
        return False, "body is not JSON"
    got = json_path(doc, exp.name or "")
    if got is _MISSING:
        return False, f"no {exp.name}"
    return got == exp.value, json.dumps(got)[:80]


def check_results(
    expectations: Sequence[Expectation], results: Sequence[AddressResult]
) -> list[ExpectationResult]:
    """Every expectation on every address that answered HTTP (all its attempts must pass); when no
    address answered, each expectation fails once with target ``any address``. Addresses that did not
    connect are the diagnosis's business, not the expectations'."""
    out = []
    answered = [r for r in results if any(a.http is not None for a in r.attempts)]
    if not answered:
        return [
            ExpectationResult(
                expectation=e.text, target="any address", ok=False, got="no HTTP response"
            )
            for e in expectations
        ]
    for r in answered:
        for exp in expectations:
            verdicts = [check_http(exp, a.http) for a in r.attempts] or [(False, "not tried")]
            bad = next(((ok, got) for ok, got in verdicts if not ok), None)
            out.append(
                ExpectationResult(
                    expectation=exp.text,
                    target=r.candidate.label,
                    ok=bad is None,
                    got=(bad or verdicts[0])[1] if r.attempts else "not tried",
                )
            )
    return out
