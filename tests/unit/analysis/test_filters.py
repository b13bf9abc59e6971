"""filter_snapshot: a port or pid filter keeps the peers and listeners that make the picture whole."""

from __future__ import annotations

from loopscope.analysis.filters import filter_snapshot
from loopscope.analysis.talkmap import build_talk_map
from loopscope.testing.factories import connection, listener, make_snapshot, proc


def test_filter_snapshot_keeps_peers_and_listeners() -> None:
    """--pid 10 (a client) keeps its socket, the server's end and the server's listener; the
    other connection goes."""
    client, server, other = proc(10, "curl"), proc(20, "nginx"), proc(30, "redis")
    sockets = [
        listener("tcp", "127.0.0.1", 8080, owners=[server]),
        listener("tcp", "127.0.0.1", 6379, owners=[other]),
        *connection(
            ("127.0.0.1", 40000), ("127.0.0.1", 8080), client_owner=client, server_owner=server
        ),
        *connection(
            ("127.0.0.1", 40001), ("127.0.0.1", 6379), client_owner=server, server_owner=other
        ),
    ]
    snap = make_snapshot(sockets, [client, server, other])
    by_pid = filter_snapshot(snap, (), (10,))
    assert sorted((s.local.port, s.remote.port) for s in by_pid.sockets) == [
        (8080, 0),
        (8080, 40000),
        (40000, 8080),
    ]
    edges = build_talk_map(by_pid).edges
    assert [(e.client, e.server, e.port) for e in edges] == [("curl[10]", "nginx[20]", 8080)]
    by_port = filter_snapshot(snap, (6379, 8080), ())
    assert len(by_port.sockets) == len(snap.sockets)
    assert filter_snapshot(snap, (), ()) is snap
