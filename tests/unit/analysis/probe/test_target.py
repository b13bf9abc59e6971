"""Probe target parsing: ``[SCHEME://][HOST][:PORT][/PATH]`` -> :class:`ProbeTarget`."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from loopscope.analysis.probe.target import parse_target
from loopscope.errors import UsageError
from loopscope.model.probe import ProbeTarget


@pytest.mark.parametrize(
    ("spec", "host", "port", "path", "scheme"),
    [
        ("", None, 80, None, "auto"),
        (":8080", None, 8080, None, "auto"),
        ("8080", None, 8080, None, "auto"),
        ("localhost:8080/health", "localhost", 8080, "/health", "auto"),
        ("[::1]:443", "::1", 443, None, "auto"),
        ("[::1]/x?y=1", "::1", 80, "/x?y=1", "auto"),
        ("::1", "::1", 80, None, "auto"),
        ("https://127.0.0.1:8443/", "127.0.0.1", 8443, "/", "https"),
        ("https://example.test", "example.test", 443, None, "https"),
        ("tcp://:6379", None, 6379, None, "tcp"),
        ("/health", None, 80, "/health", "auto"),
        (":8080/a/b", None, 8080, "/a/b", "auto"),
    ],
)
def test_parse_target(
    spec: str, host: str | None, port: int, path: str | None, scheme: str
) -> None:
    assert parse_target(spec) == ProbeTarget(host=host, port=port, path=path, scheme=scheme)


@pytest.mark.parametrize(
    "spec", ["ftp://x", ":0", ":65536", ":http", "[::1", "[::1]x", "[zz::1]:80", "1:2:3:zz"]
)
def test_parse_target_rejects(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_target(spec)


@given(st.text(max_size=40))
@example("¹")  # str.isdigit() is true for superscripts; int() is not
def test_parse_target_returns_a_target_or_raises_usage_error(spec: str) -> None:
    try:
        target = parse_target(spec)
    except UsageError:
        return
    assert 0 < target.port < 65536
