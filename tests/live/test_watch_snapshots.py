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


def test_a_connection_opened_during_a_short_watch_is_in_the_last_sample_with_its_owner() -> None:
    """Full reads (owners) come at most every 5 s; a 1.5 s watch had only the first one, so a
    keep-alive connection opened during it was never seen with its client (``?`` in the report):
    the final full read at the end of the window names it."""
    import os
    import threading

    from loopscope.watch.session import WatchOptions, run_watch

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    held: list[socket.socket] = []
    client_ports: list[int] = []

    def connect_later() -> None:
        time.sleep(0.4)  # after the watch's first full read
        held.append(socket.create_connection(("127.0.0.1", port)))
        held.append(srv.accept()[0])
        client_ports.append(held[0].getsockname()[1])

    opener = threading.Thread(target=connect_later)
    opener.start()
    try:
        data = run_watch(WatchOptions(ebpf=False, destroy=False), duration_s=1.5)
    finally:
        opener.join(10)
        for s in (*held, srv):
            s.close()
    (client_port,) = client_ports
    seen = [
        pc
        for sample in data.samples
        for pc in sample.established
        if pc.server.port == port and pc.client.port == client_port
    ]
    assert seen, "the connection opened during the watch was never read"
    assert [p.pid for p in seen[-1].client_owners] == [os.getpid()]
