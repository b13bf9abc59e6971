import ipaddress
from pathlib import Path

from loopscope.analysis.scope import classify_address, host_address_set, is_loopback
from loopscope.analysis.stack import check_stack, summarize_stack
from loopscope.analysis.talkmap import build_talk_map
from loopscope.model import LinkInfo, Scope, TcpState
from loopscope.testing.factories import (
    LO_ADDRESSES,
    connection,
    listener,
    make_snapshot,
    proc,
    snapshot_from_recording,
)

FIXTURES = Path(__file__).parents[2] / "fixtures"


def test_scope_classification():
    hosts = host_address_set(LO_ADDRESSES)
    ip = ipaddress.ip_address
    assert classify_address(ip("127.0.0.53"), hosts) is Scope.LOOPBACK
    assert classify_address(ip("::ffff:127.0.0.1"), hosts) is Scope.LOOPBACK
    assert classify_address(ip("::"), hosts) is Scope.WILDCARD
    assert classify_address(ip("192.0.2.2"), hosts) is Scope.OWN_ADDRESS
    assert classify_address(ip("::ffff:192.0.2.2"), hosts) is Scope.OWN_ADDRESS
    assert classify_address(ip("198.51.100.7"), hosts) is Scope.OTHER
    assert not is_loopback(ip("::2"))


def test_self_call_prefork_and_chain():
    master = proc(100, "gunicorn", pgid=100)
    worker = proc(101, "gunicorn", pgid=100)
    nginx = proc(200, "nginx", pgid=200)
    sockets = [
        listener("tcp", "0.0.0.0", 8000, owners=[master, worker]),
        listener("tcp", "127.0.0.1", 80, owners=[nginx]),
    ]
    # the worker calls its own app over the host address (routed through lo)
    sockets += connection(
        ("192.0.2.2", 40001), ("192.0.2.2", 8000), client_owner=worker, server_owner=worker
    )
    # nginx proxies to the app: a loopback edge that is not a self-call
    sockets += connection(
        ("127.0.0.1", 40002), ("127.0.0.1", 8000), client_owner=nginx, server_owner=worker
    )
    sockets += connection(
        ("127.0.0.1", 40003), ("127.0.0.1", 8000), client_owner=nginx, server_owner=worker
    )
    # a closed one, TIME_WAIT on the client side only
    sockets += connection(
        ("127.0.0.1", 40004),
        ("127.0.0.1", 8000),
        client_owner=None,
        server_owner=None,
        state=TcpState.TIME_WAIT,
    )
    talk = build_talk_map(make_snapshot(sockets, [master, worker, nginx]))
    edges = {(e.client, e.server, e.port): e for e in talk.edges}
    assert edges[
        ("gunicorn[100,101]", "gunicorn[100,101]", 8000)
    ].self_call  # the worker, shown as its app
    chain = edges[("nginx[200]", "gunicorn[100,101]", 8000)]
    assert chain.connections == 2 and not chain.self_call
    assert edges[("?", "gunicorn[100,101]", 8000)].states == {"TIME_WAIT": 1}
    assert talk.self_call_connections == 1 and talk.unpaired == 1
    assert len(talk.connections) == 4


def test_systemd_service_cgroup_counts_as_one_app():
    a = proc(10, "app", cgroup="/system.slice/app.service")
    helper = proc(11, "helper", cgroup="/system.slice/app.service")
    other = proc(12, "cli", cgroup="/user.slice/user-0.slice/session-1.scope")
    sockets = [listener("tcp", "127.0.0.1", 9000, owners=[a])]
    sockets += connection(
        ("127.0.0.1", 50000), ("127.0.0.1", 9000), client_owner=helper, server_owner=a
    )
    sockets += connection(
        ("127.0.0.1", 50001), ("127.0.0.1", 9000), client_owner=other, server_owner=a
    )
    talk = build_talk_map(make_snapshot(sockets, [a, helper, other]))
    # the helper is shown as the app it belongs to (as watch shows it); its pid stays in client_pids
    assert {(e.client, e.client_pids): e.self_call for e in talk.edges} == {
        ("app[10]", (11,)): True,
        ("cli[12]", (12,)): False,
    }


def test_recorded_host_pairs_v4_mapped(host1_expected):
    snap = snapshot_from_recording(FIXTURES / "host1")
    talk = build_talk_map(snap)
    mapped = [c for c in talk.connections if c.client.port == host1_expected["mapped_client_port"]]
    assert mapped and mapped[0].server.port == host1_expected["listen_any6_dual"]
    assert mapped[0].client_socket is not None and mapped[0].server_socket is not None
    assert any(e.self_call for e in talk.edges)  # the recording process talks to its own listeners


def test_stack_summary_and_lo_down():
    snap = make_snapshot(
        connection(("127.0.0.1", 40000), ("127.0.0.1", 5432), client_owner=None, server_owner=None)
    )
    summary = summarize_stack(snap)
    assert summary.lo_up and summary.has_127_8 and summary.has_v6_loopback
    assert summary.ephemeral_in_use == 1 and summary.ephemeral_by_destination == {
        "127.0.0.1:5432": 1
    }
    down = make_snapshot(
        [], links=(LinkInfo(name="lo", index=1, up=False, running=False, loopback=True),)
    )
    (f,) = check_stack(summarize_stack(down), netns_label="blue")
    assert f.code == "LO_DOWN" and f.remedy == "ip -n blue link set lo up"


def test_stack_summary_counts_by_value_not_by_object():
    """Equal addresses and endpoints that are distinct objects count together (the summary keys its
    caches by object id and folds by value); destinations keep first-seen order among equal counts."""
    import dataclasses

    from loopscope.model import Proto

    sockets = [
        listener("tcp", "127.0.0.1", 5432),
        listener("udp", "127.0.0.1", 5353),
        *connection(
            ("127.0.0.1", 40001), ("127.0.0.1", 6000), client_owner=None, server_owner=None
        ),
        *connection(
            ("127.0.0.1", 40002), ("127.0.0.1", 5432), client_owner=None, server_owner=None
        ),
        *connection(
            ("127.0.0.1", 40003), ("127.0.0.1", 5432), client_owner=None, server_owner=None
        ),
        *connection(
            ("127.0.0.1", 40004), ("198.51.100.7", 443), client_owner=None, server_owner=None
        ),
    ]
    udp_client = connection(
        ("127.0.0.1", 40005), ("127.0.0.1", 5353), client_owner=None, server_owner=None
    )[0]
    sockets.append(dataclasses.replace(udp_client, proto=Proto.UDP))
    summary = summarize_stack(make_snapshot(sockets))
    assert summary.listeners == 2
    assert summary.loopback_connections == 6  # both ends of three loopback TCP connections
    assert summary.ephemeral_in_use == 4  # 40001-40004; the UDP client is not counted
    assert list(summary.ephemeral_by_destination.items()) == [
        ("127.0.0.1:5432", 2),
        ("127.0.0.1:6000", 1),
    ]


def test_stack_summary_runs_of_shared_destination_objects():
    """Sockets sharing one destination object (as the netlink parser gives them) in runs A A B A B:
    counted per destination, first seen first."""
    import dataclasses

    a = connection(("127.0.0.1", 40001), ("127.0.0.1", 6000), client_owner=None, server_owner=None)[
        0
    ]
    b = connection(("127.0.0.1", 40002), ("127.0.0.1", 5000), client_owner=None, server_owner=None)[
        0
    ]
    ports = iter(range(41000, 41010))
    sockets = [
        dataclasses.replace(s, local=s.local._replace(port=next(ports))) for s in (a, a, b, a, b)
    ]
    summary = summarize_stack(make_snapshot(sockets))
    assert list(summary.ephemeral_by_destination.items()) == [
        ("127.0.0.1:6000", 3),
        ("127.0.0.1:5000", 2),
    ]
    assert summary.ephemeral_in_use == 5


def test_ephemeral_pressure():
    sockets = []
    for port in range(32768, 32768 + 6000):
        sockets += connection(
            ("127.0.0.1", port),
            ("127.0.0.1", 8080),
            client_owner=None,
            server_owner=None,
            state=TcpState.TIME_WAIT,
        )
    findings = check_stack(summarize_stack(make_snapshot(sockets)))
    assert [(f.code, f.severity.value) for f in findings] == [("EPHEMERAL_PORT_PRESSURE", "medium")]


def _reference_pairs(snapshot):
    """Pairing as it was before raw keys: ipaddress Endpoints as dict keys (the specification)."""
    from loopscope.analysis.scope import is_loopback_connection, unmap
    from loopscope.analysis.talkmap import _listener_index, _match_listener
    from loopscope.model import Endpoint

    hosts = host_address_set(snapshot.addresses)
    listeners = _listener_index([s for s in snapshot.sockets if s.is_listener])
    ends = {}
    for sock in snapshot.sockets:
        if sock.is_listener or sock.state is TcpState.LISTEN:
            continue
        if is_loopback_connection(sock, hosts):
            local = Endpoint(unmap(sock.local.address), sock.local.port)
            remote = Endpoint(unmap(sock.remote.address), sock.remote.port)
            ends[(sock.proto, local, remote)] = sock
    done, out, unpaired = set(), [], 0
    for key, sock in ends.items():
        if key in done:
            continue
        proto, local, remote = key
        peer = ends.get((proto, remote, local))
        done |= {key, (proto, remote, local)}
        ll = _match_listener(local, listeners.get((proto, local.port), []))
        rl = _match_listener(remote, listeners.get((proto, remote.port), []))
        if rl is not None and (ll is None or local.port > remote.port):
            row = (local, remote, sock, peer, rl)
        elif ll is not None:
            row = (remote, local, peer, sock, ll)
        elif local.port >= remote.port:
            row = (local, remote, sock, peer, None)
        else:
            row = (remote, local, peer, sock, None)
        unpaired += peer is None
        out.append((proto, *row, (row[2] or row[3] or sock).state))
    out.sort(key=lambda r: (r[2].port, r[1].port))
    return out, unpaired


def test_pairing_on_raw_keys_matches_ipaddress_pairing():
    """IPv4-mapped ends, ::1, the host's own address, self-connects, no listener, UDP, other hosts."""
    import dataclasses

    from loopscope.analysis.talkmap import pair_connections
    from loopscope.model import Endpoint, Proto

    app = proc(300, "app", pgid=300)
    sockets = [
        listener("tcp", "::", 8080, owners=[app], v6only=False),
        listener("tcp", "127.0.0.1", 9000, owners=[app]),
        listener("tcp", "::1", 9001, owners=[app]),
        listener("udp", "127.0.0.1", 5353, owners=[app]),
    ]
    sockets += connection(
        ("::ffff:127.0.0.1", 40010), ("::ffff:127.0.0.1", 8080), client_owner=app, server_owner=app
    )
    # a v4 client whose server end is the dual-stack listener's IPv4-mapped accepted socket
    client, server = connection(
        ("127.0.0.1", 40011), ("127.0.0.1", 8080), client_owner=app, server_owner=app
    )
    mapped = ipaddress.ip_address("::ffff:127.0.0.1")
    server = dataclasses.replace(
        server, local=Endpoint(mapped, 8080), remote=Endpoint(mapped, 40011)
    )
    sockets += [client, server]
    sockets += connection(("::1", 40012), ("::1", 9001), client_owner=app, server_owner=None)
    sockets += connection(
        ("192.0.2.2", 40013), ("127.0.0.1", 9000), client_owner=None, server_owner=app
    )
    sockets += connection(
        ("127.0.0.1", 40014),
        ("127.0.0.1", 9000),
        client_owner=app,
        server_owner=app,
        state=TcpState.TIME_WAIT,
    )
    sockets += connection(
        ("127.0.0.1", 7000), ("127.0.0.1", 7000), client_owner=app, server_owner=app
    )[:1]
    sockets += connection(
        ("127.0.0.1", 50000), ("127.0.0.1", 6000), client_owner=None, server_owner=None
    )
    sockets += connection(
        ("127.0.0.2", 6001), ("127.0.0.3", 50001), client_owner=None, server_owner=None
    )
    sockets += connection(
        ("198.51.100.7", 40015), ("127.0.0.1", 9000), client_owner=None, server_owner=app
    )
    udp = connection(
        ("127.0.0.1", 40016), ("127.0.0.1", 5353), client_owner=app, server_owner=None
    )[:1]
    sockets += [dataclasses.replace(s, proto=Proto.UDP) for s in udp]
    snap = make_snapshot(sockets, [app])
    got, unpaired = pair_connections(snap)
    want, want_unpaired = _reference_pairs(snap)
    assert unpaired == want_unpaired
    assert [
        (c.proto, c.client, c.server, c.client_socket, c.server_socket, c.listener, c.state)
        for c in got
    ] == want
    assert len(got) == 9  # 198.51.100.7 is another host: not loopback
    assert any(
        c.client == Endpoint(ipaddress.ip_address("127.0.0.1"), 40011) and c.server_socket is server
        for c in got
    )


def test_edges_follow_a_walk_over_the_sorted_connections():
    """Edges are counted per combination (listener, owners, state, server end), not per connection;
    the result must be what a walk over ``talk.connections`` gives: the same counts, and states,
    equal-count edges and ephemeral labels in first-seen order, whatever the socket order."""
    import random
    from collections import Counter

    app = proc(300, "app", pgid=300)
    db = proc(400, "db", pgid=400)
    sockets = [
        listener("tcp", "127.0.0.1", 5432, owners=[db]),
        listener("tcp", "0.0.0.0", 8080, owners=[app]),
    ]
    states = [TcpState.ESTABLISHED, TcpState.FIN_WAIT2, TcpState.CLOSE_WAIT]  # both ends kept
    for i in range(60):  # two servers, three addresses, three states, ports out of order
        port = 5432 if i % 2 else 8080
        server = ("127.0.0.1" if port == 5432 else f"127.0.0.{1 + i % 3}", port)
        sockets += connection(
            (server[0], 40000 + (i * 7919) % 997),
            server,
            client_owner=app if port == 5432 else db,
            server_owner=db if port == 5432 else app,
            state=states[i % 3],
        )
    random.Random(7).shuffle(sockets)
    talk = build_talk_map(make_snapshot(sockets, [app, db]))
    by_edge = {(e.client, e.port): e for e in talk.edges}
    assert sum(e.connections for e in talk.edges) == len(talk.connections) == 60
    for e in talk.edges:
        seen = [c.state.value for c in talk.connections if c.server.port == e.port]
        assert list(e.states) == list(dict.fromkeys(seen))  # first-seen order
        assert e.states == dict(Counter(seen))
    labels = [f"{c.server}/{c.proto}" for c in talk.connections if c.listener is not None]
    assert list(talk.ephemeral_in_use) == list(dict.fromkeys(labels))
    assert talk.ephemeral_in_use == dict(Counter(labels))
    assert set(by_edge) == {("db[400]", 8080), ("app[300]", 5432)}
