"""Expectations (pure)."""

from __future__ import annotations

import pytest

from loopscope.analysis.probe.expect import check_http, check_results, json_path, parse_expectations
from loopscope.errors import UsageError
from loopscope.model.probe import AddressResult, Attempt, Candidate, HttpInfo


def _info(
    status: int = 200,
    body: bytes = b'{"status": "ok", "items": [{"id": 3}]}',
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),),
) -> HttpInfo:
    return HttpInfo(
        status=status,
        reason="",
        headers=headers,
        body_bytes=len(body),
        ttfb_s=0.001,
        total_s=0.002,
        body=body,
    )


def _one(kind: str, value: str):  # type: ignore[no-untyped-def]
    args = {"status": None, "headers": [], "body": None, "json_paths": []}
    if kind == "status":
        args["status"] = value
    elif kind == "header":
        args["headers"] = [value]
    elif kind == "body":
        args["body"] = value
    else:
        args["json_paths"] = [value]
    return parse_expectations(**args)[0]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "value", "passes", "fails"),
    [
        ("status", "200", _info(200), _info(500)),
        ("status", "2xx", _info(204), _info(301)),
        ("status", "200,404", _info(404), _info(403)),
        ("status", "200-299", _info(299), _info(300)),
        ("header", "Content-Type", _info(), _info(headers=())),
        (
            "header",
            "content-type: application/json",
            _info(),
            _info(headers=(("content-type", "text/html"),)),
        ),
        ("body", r'"status":\s*"ok"', _info(), _info(body=b"nope")),
        ("json", "status=ok", _info(), _info(body=b'{"status": "down"}')),
        ("json", "items.0.id=3", _info(), _info(body=b'{"items": []}')),
        ("json", "items[0].id=3", _info(), _info(body=b"not json")),
    ],
)
def test_each_check_passes_and_fails(
    kind: str, value: str, passes: HttpInfo, fails: HttpInfo
) -> None:
    exp = _one(kind, value)
    assert check_http(exp, passes)[0] is True
    assert check_http(exp, fails)[0] is False
    assert check_http(exp, None) == (False, "no HTTP response")


def test_json_path() -> None:
    doc = {"a": {"b": [1, {"c": True}]}}
    assert json_path(doc, "a.b.1.c") is True
    assert json_path(doc, "a.b[0]") == 1
    assert json_path(doc, "a.x") != 1


@pytest.mark.parametrize(
    "bad",
    [
        {"status": "abc"},
        {"headers": ["bad header:"[:0] + ":x"]},
        {"body": "("},
        {"json_paths": ["noequals"]},
    ],
)
def test_bad_expectations(bad: dict) -> None:  # type: ignore[type-arg]
    args = {"status": None, "headers": [], "body": None, "json_paths": [], **bad}
    with pytest.raises(UsageError):
        parse_expectations(**args)


def test_check_results_skip_unconnected_addresses_but_fail_when_none_answered() -> None:
    exp = parse_expectations(status="200", headers=[], body=None, json_paths=[])
    good = AddressResult(
        candidate=Candidate(address="127.0.0.1", label="127.0.0.1", family=4),
        attempts=(Attempt(address="127.0.0.1", port=80, ok=True, http=_info()),),
    )
    down = AddressResult(
        candidate=Candidate(address="::1", label="::1", family=6),
        attempts=(
            Attempt(address="::1", port=80, ok=False, error="ECONNREFUSED", phase="connect"),
        ),
    )
    res = check_results(exp, [good, down])
    assert [(r.target, r.ok) for r in res] == [("127.0.0.1", True)]
    none = check_results(exp, [down])
    assert [(r.target, r.ok) for r in none] == [("any address", False)]
