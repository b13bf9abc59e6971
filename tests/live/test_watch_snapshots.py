"""Live: watch's light snapshot counts TIME_WAIT toward each listener (ephemeral ports held by local
clients) apart from the other TIME_WAIT sockets (server side), without a record per row."""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest

from loopscope.analysis.watch.model import sample_snapshot
from loopscope.backends.linux.netns import resolve_netns
from loopscope.model import Endpoint
from loopscope.watch.snapshots import WatchSnapshots

pytestmark = [pytest.mark.linux]


def test_time_wait_toward_a_listener_is_counted_apart_from_server_side_time_wait() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(256)
    port = srv.getsockname()[1]
    client_first, server_first = 40, 25
    for k in range(client_first + server_first):
        c = socket.create_connection(("127.0.0.1", port))
        a, _ = srv.accept()
        first, second = (c, a) if k < client_first else (a, c)
        first.close()  # the side that closes first holds the TIME_WAIT
        time.sleep(0.001)
        second.close()
    srv_addr = Endpoint(ipaddress.IPv4Address("127.0.0.1"), port)
    reader = WatchSnapshots(resolve_netns(None))
    try:
        light = reader.read(full=True)
        listeners_only = reader.read(full=False)
    finally:
        reader.close()
        srv.close()
    assert light.time_wait_by_dest.get(srv_addr) == client_first
    assert light.time_wait_other >= server_first  # plus any other TIME_WAIT of this host
    assert not listeners_only.time_wait_by_dest and listeners_only.time_wait_other == 0
    assert any(s.local == srv_addr for s in light.snapshot.sockets)
    # the TIME_WAIT toward the listener holds ephemeral ports: watch's pressure signal counts them
    sample = sample_snapshot(
        light.snapshot, light.time_wait_by_dest, time_wait_other=light.time_wait_other
    )
    assert sample.ephemeral_in_use.get(f"127.0.0.1:{port}/tcp", 0) >= client_first
    assert sample.time_wait is not None and sample.time_wait >= client_first + server_first
