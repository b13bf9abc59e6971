"""The one app definition: identity, grouping, client membership and labels."""

from __future__ import annotations

from loopscope.analysis.apps import (
    EXTERNAL_APP,
    UNKNOWN_APP,
    App,
    AppKey,
    app_label,
    client_app,
    client_group_label,
    find_apps,
    is_same_app,
    process_label,
)
from loopscope.analysis.talkmap import build_talk_map
from loopscope.model import ProcessKey
from loopscope.testing.factories import NS, connection, listener, make_snapshot, proc


def test_prefork_listener_shared_by_three_processes_is_one_app() -> None:
    master = proc(100, "gunicorn", pgid=100)
    workers = [proc(101, "gunicorn", pgid=100), proc(102, "gunicorn", pgid=100)]
    # one listener, held by all three; seen once per snapshot, with the owners in any order
    seen = [((master, *workers), 8000), ((workers[1], master, workers[0]), 8000)]
    (app,) = find_apps(seen, netns=NS)
    assert app.key == AppKey(
        netns=NS, processes=(ProcessKey(100, 1000), ProcessKey(101, 1010), ProcessKey(102, 1020))
    )
    assert app.ports == (8000,) and app.pids == (100, 101, 102)
    assert app.label == "gunicorn[100,101,...]"
    # each worker, and the master, is that app when it calls out
    for p in (master, *workers):
        assert client_app([p], [app], netns=NS) is app


def test_prefork_app_in_the_talk_map_is_one_server_and_one_client() -> None:
    master = proc(100, "gunicorn", pgid=100)
    w1, w2 = proc(101, "gunicorn", pgid=100), proc(102, "gunicorn", pgid=100)
    sockets = [listener("tcp", "127.0.0.1", 8000, owners=[master, w1, w2])]
    sockets += connection(
        ("127.0.0.1", 40001), ("127.0.0.1", 8000), client_owner=w1, server_owner=w2
    )
    sockets += connection(
        ("127.0.0.1", 40002), ("127.0.0.1", 8000), client_owner=w2, server_owner=w1
    )
    (edge,) = build_talk_map(make_snapshot(sockets, [master, w1, w2])).edges
    assert edge.client_app == edge.server_app and edge.self_call and edge.connections == 2
    assert edge.client == edge.server == "gunicorn[100,101,...]"
    assert edge.client_pids == (101, 102)


def test_client_without_listener_is_keyed_by_its_name() -> None:
    server = proc(200, "redis-server")
    cli = proc(300, "python")
    apps = find_apps([((server,), 6379)], netns=NS)
    got = client_app([cli], apps, server=apps[0], netns=NS)
    assert got.key == AppKey(netns=NS, comm="python") and got.ports == ()
    assert got.label == "python[300]" and got.key != apps[0].key
    # another process of that name is the same client app; another name is another
    assert client_app([proc(301, "python")], apps, netns=NS).key == got.key
    assert client_app([proc(302, "curl")], apps, netns=NS).key == AppKey(netns=NS, comm="curl")
    # a socket two processes share is named by both; another namespace is another app
    shared = client_app([proc(303, "curl"), proc(304, "bash")], apps, netns=NS)
    assert shared.key == AppKey(netns=NS, comm="bash/curl")
    assert client_app([cli], apps, netns=None).key != got.key


def test_short_lived_client_named_at_connect_time() -> None:
    app = find_apps([((proc(10, "apache2"),), 8095)])[0]
    # eBPF gave pid and comm; /proc was never read (the process exited)
    gone = client_app([], [app], pid=15402, comm="curl")
    assert gone.key == AppKey(comm="curl")
    assert client_app([proc(15437, "curl")], [app]).key == gone.key  # the same app as a live one
    # an owner's pid still makes it the owner's app, whatever the name
    assert client_app([], [app], pid=10, comm="apache2") is app


def test_client_group_labels() -> None:
    assert client_group_label("curl", [15437]) == "curl[15437]"
    assert client_group_label("curl", range(300)) == "curl (300 processes)"
    assert client_group_label("curl", [5, 5]) == "curl[5]"
    assert client_group_label("curl", []) == "curl"
    key = AppKey(comm="curl")
    assert app_label(key, [proc(1, "curl"), proc(2, "curl")]) == "curl (2 processes)"
    assert app_label(key, [proc(1, "curl")], pids=[1, 2, 3]) == "curl (3 processes)"
    # pids never change the label of a listener app
    server = find_apps([((proc(10, "apache2"),), 8095)])[0]
    assert app_label(server.key, server.processes, pids=[1, 2, 3]) == "apache2[10]"


def test_short_lived_clients_are_one_talk_map_edge() -> None:
    srv = proc(10, "apache2")
    sockets = [listener("tcp", "127.0.0.1", 8095, owners=[srv])]
    clients = [proc(1000 + k, "curl") for k in range(5)]
    for k, c in enumerate(clients):
        sockets += connection(
            ("127.0.0.1", 41000 + k), ("127.0.0.1", 8095), client_owner=c, server_owner=srv
        )
    sockets += connection(
        ("127.0.0.1", 42000), ("127.0.0.1", 8095), client_owner=srv, server_owner=srv
    )
    edges = build_talk_map(make_snapshot(sockets, [srv, *clients])).edges
    assert [(e.client, e.server, e.connections, e.self_call) for e in edges] == [
        ("curl (5 processes)", "apache2[10]", 5, False),
        ("apache2[10]", "apache2[10]", 1, True),
    ]
    assert edges[0].client_pids == (1000, 1001, 1002, 1003, 1004)


def test_two_clients_of_one_name_without_listener_are_not_a_self_call() -> None:
    a, b = proc(1, "python"), proc(2, "python")  # b accepted on a listener that is gone
    sockets = connection(("127.0.0.1", 40000), ("127.0.0.1", 9999), client_owner=a, server_owner=b)
    (edge,) = build_talk_map(make_snapshot(sockets, [a, b])).edges
    assert edge.client_app != edge.server_app and not edge.self_call


def test_client_known_by_pid_only_and_unknown_and_external() -> None:
    app = find_apps([((proc(10, "app"),), 9000)])[0]
    assert client_app([], [app], pid=10) is app  # eBPF pid of an owner
    by_pid = client_app([], [app], pid=77)
    assert by_pid.key == AppKey(pid=77) and by_pid.label == "pid 77"
    unknown = client_app([], [app])
    assert unknown.key == UNKNOWN_APP and unknown.label == "?"
    assert app_label(EXTERNAL_APP) == "external"


def test_overlapping_owner_sets_merge_and_unowned_listeners_stay_apart() -> None:
    master, w1 = proc(1, "nginx"), proc(2, "nginx")
    other = proc(3, "memcached")
    apps = find_apps(
        [((master, w1), 80), ((w1,), 443), ((other,), 11211), ((), 5432), ((), 6000), ((), 80)]
    )
    labels = {a.ports: a.label for a in apps}
    # the ownerless :80 was seen with its owners in another sample: no separate app for it
    assert labels == {(80, 443): "nginx[1,2]", (5432,): "?", (6000,): "?", (11211,): "memcached[3]"}
    unowned = [a.key for a in apps if not a.processes]
    assert unowned == [AppKey(ports=(5432,)), AppKey(ports=(6000,))]  # two apps with one label


def test_membership_group_and_service_cgroup_prefer_the_server() -> None:
    a = proc(10, "a", cgroup="/system.slice/shop.service")
    b = proc(20, "b", cgroup="/system.slice/shop.service")
    helper = proc(11, "helper", pgid=10)
    stranger = proc(12, "sh", pgid=99)
    apps = find_apps([((a,), 8000), ((b,), 9000)])
    assert is_same_app(helper, [a]) and not is_same_app(stranger, [a])
    assert client_app([helper], apps).key == apps[0].key
    # a process in the service cgroup belongs to both apps: the one it calls wins (a self-call)
    cgroup_mate = proc(30, "worker", cgroup="/system.slice/shop.service")
    assert client_app([cgroup_mate], apps, server=apps[1]) is apps[1]
    assert client_app([cgroup_mate], apps) is apps[0]


def test_labels() -> None:
    ps = [proc(12, "python"), proc(5, "nginx"), proc(7, "nginx")]
    assert process_label(ps) == "nginx/python[5,7,...]"
    assert process_label(ps, max_pids=3) == "nginx/python[5,7,12]"
    assert process_label([]) == "?"
    assert App(key=AppKey(processes=(ps[0].key,)), processes=(ps[0],)).label == "python[12]"
