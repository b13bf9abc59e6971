"""The one app definition: identity, grouping, client membership and labels."""

from __future__ import annotations

from loopscope.analysis.apps import (
    EXTERNAL_APP,
    UNKNOWN_APP,
    App,
    AppKey,
    app_label,
    client_app,
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


def test_client_without_listener_is_keyed_by_its_process() -> None:
    server = proc(200, "redis-server")
    cli = proc(300, "python")
    apps = find_apps([((server,), 6379)], netns=NS)
    got = client_app([cli], apps, server=apps[0], netns=NS)
    assert got.key == AppKey(netns=NS, processes=(cli.key,)) and got.ports == ()
    assert got.label == "python[300]" and got.key != apps[0].key
    # the same process seen twice is the same key (hashable, equal by value)
    assert client_app([cli], apps, netns=NS).key in {got.key}


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
