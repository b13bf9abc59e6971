"""Live: the real `loopscope probe` CLI against real nginx (TLS), Redis and PostgreSQL: table, JSON,
expectations as checks (pass -> exit 0, fail -> exit 1), bad input -> one line and exit 2."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from procs import run_loopscope
from servers import Server, ServerUnavailable, nginx_server, postgres_server, redis_server

pytestmark = [pytest.mark.linux, pytest.mark.services]


@pytest.fixture(scope="module")
def web() -> Iterator[Server]:
    try:
        with nginx_server(bind=["127.0.0.1", "::1"], tls=True) as srv:
            yield srv
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


def _probe(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    res = run_loopscope("probe", *args, "--json")
    assert res.stderr == "" or res.returncode != 0, res.stderr
    return res.returncode, json.loads(res.stdout)


def test_tls_http_details_side_by_side(web: Server) -> None:
    code, doc = _probe(f"localhost:{web.port}/json", "--count", "5")
    assert doc["mode"] == "https" and doc["schema_version"] == 1
    rows = {a["address"]: a for a in doc["addresses"]}
    for addr in ("127.0.0.1", "::1"):
        if addr not in rows:
            continue
        row = rows[addr]
        assert row["ok"] and row["ttfb"]["count"] == 5 and row["ttfb"]["p50_ms"] > 0
        att = row["attempts"][0]
        assert att["tls"]["subject"] == "CN=localhost" and att["tls"]["self_signed"] is True
        assert att["tls"]["expires_in_s"] > 86400 * 25
        assert att["http"]["status"] == 200 and att["http"]["body_bytes"] == len(
            '{"status": "ok", "n": 3}'
        )
        assert ["server", "nginx/1.22.1"] in att["http"]["headers"] or any(
            h[0] == "server" for h in att["http"]["headers"]
        )
    assert code == 0


def test_expectations_pass(web: Server) -> None:
    code, doc = _probe(
        f"127.0.0.1:{web.port}/json",
        "--expect-status",
        "2xx",
        "--expect-header",
        "X-Probe: yes",
        "--expect-body",
        r'"n":\s*3',
        "--expect-json",
        "status=ok",
        "--expect-json",
        "n=3",
    )
    assert code == 0 and doc["checks"] and all(c["ok"] for c in doc["checks"])


@pytest.mark.parametrize(
    "flag",
    [
        ["--expect-status", "404"],
        ["--expect-header", "X-Missing"],
        ["--expect-body", "^nope$"],
        ["--expect-json", "status=down"],
    ],
)
def test_expectations_fail_exit_1(web: Server, flag: list[str]) -> None:
    code, doc = _probe(f"127.0.0.1:{web.port}/json", *flag)
    assert code == 1
    assert [c["ok"] for c in doc["checks"]] == [False]
    assert any(f["code"] == "PROBE_EXPECTATION_FAILED" for f in doc["findings"])


def test_table_output_fits_100_columns(web: Server) -> None:
    # COLUMNS set explicitly: in a pipe without it, tables have their natural width (issue #12)
    res = run_loopscope("probe", f":{web.port}/", prefix=["env", "COLUMNS=100"])
    assert res.returncode in (0, 1), res.stderr
    assert "TLS" in res.stdout and "CN=localhost" in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= 100


@pytest.mark.parametrize(
    "args",
    [
        ["ftp://x"],
        [":99999"],
        [":80", "--count", "0"],
        [":80", "--expect-status", "abc"],
        ["no-such-host.invalid:80"],
    ],
)
def test_bad_input_one_line_exit_2(args: list[str]) -> None:
    res = run_loopscope("probe", *args)
    assert res.returncode == 2
    # "loopscope probe: error: ..." (checked while parsing) or "loopscope: error: ..." (at run time)
    assert re.match(r"loopscope( probe)?: error: ", res.stderr), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr


def test_tcp_mode_fingerprints_redis_and_postgres() -> None:
    try:
        with redis_server(bind="127.0.0.1") as r, postgres_server(bind="127.0.0.1") as pg:
            code_r, doc_r = _probe(f"tcp://127.0.0.1:{r.port}")
            code_p, doc_p = _probe(f"tcp://127.0.0.1:{pg.port}")
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    assert code_r == 0 and doc_r["fingerprint"]["service"] == "redis"
    assert code_p == 0 and doc_p["fingerprint"]["service"] == "postgresql"
    assert doc_r["addresses"][0]["connect"]["p50_ms"] > 0


def test_auto_mode_detects_non_http_service() -> None:
    try:
        with redis_server(bind="127.0.0.1") as r:
            code, doc = _probe(f"127.0.0.1:{r.port}")
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    assert doc["mode"] == "tcp" and doc["fingerprint"]["service"] == "redis" and code == 0
