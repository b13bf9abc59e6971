"""Live: every server starter of tests/live/servers.py binds exactly the address asked for (0.0.0.0,
127.0.0.1, ::1, ::), as the listener table sees it, and is identified through that bind. The lead's
`ports` tests reuse these starters, so they are tested here once."""

from __future__ import annotations

import pytest
from servers import (
    ServerUnavailable,
    memcached_server,
    nginx_server,
    postgres_server,
    python_http_server,
    redis_server,
    sshd_server,
)

from loopscope.analysis.listeners import find_listeners
from loopscope.collect import take_snapshot
from loopscope.probes.fingerprint import fingerprint_listener

pytestmark = [pytest.mark.linux, pytest.mark.services]

STARTERS = {
    "redis": (redis_server, "redis"),
    "memcached": (memcached_server, "memcached"),
    "sshd": (sshd_server, "ssh"),
    "nginx": (nginx_server, "https"),
    "postgresql": (postgres_server, "postgresql"),
    "python-http": (python_http_server, "http"),
}


@pytest.mark.parametrize("bind", ["0.0.0.0", "127.0.0.1", "::1", "::"])
@pytest.mark.parametrize("name", sorted(STARTERS))
def test_starter_binds_exactly_and_is_identified(name: str, bind: str) -> None:
    starter, service = STARTERS[name]
    try:
        with starter(bind=bind) as srv:  # type: ignore[operator]
            rows = [
                li
                for li in find_listeners(take_snapshot(attribute=False))
                if li.local.port == srv.port and li.proto.value == "tcp"
            ]
            fp = fingerprint_listener((bind, srv.port), timeout_s=1.0)
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    assert [str(li.local.address) for li in rows] == [bind]
    assert fp.service == service


def test_two_binds_on_one_port() -> None:
    try:
        with redis_server(bind=["127.0.0.1", "::1"]) as srv:
            rows = sorted(
                str(li.local.address)
                for li in find_listeners(take_snapshot(attribute=False))
                if li.local.port == srv.port
            )
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    assert rows == ["127.0.0.1", "::1"]
