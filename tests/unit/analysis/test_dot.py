import re

from loopscope.analysis.talkmap import build_talk_map
from loopscope.render.dot import format_dot
from loopscope.testing.factories import connection, listener, make_snapshot, proc


def test_dot_marks_self_calls_red():
    app = proc(20, "app")
    ngx = proc(10, "nginx")
    sockets = [listener("tcp", "127.0.0.1", 8000, owners=[app])]
    sockets += connection(
        ("127.0.0.1", 40000), ("127.0.0.1", 8000), client_owner=ngx, server_owner=app
    )
    sockets += connection(
        ("127.0.0.1", 40001), ("127.0.0.1", 8000), client_owner=app, server_owner=app
    )
    text = format_dot(build_talk_map(make_snapshot(sockets, [app, ngx])).edges)
    assert text.startswith("digraph loopscope {") and text.rstrip().endswith("}")
    nodes = _nodes(text)
    ngx_id, app_id = nodes["nginx[10]"], nodes["app[20]"]
    assert f'{ngx_id} -> {app_id} [label=":8000/tcp x1"];' in text
    assert f'{app_id} -> {app_id} [label=":8000/tcp x1", color=red' in text


def _nodes(text: str) -> dict[str, str]:
    """Node label -> id; every label once (a repeated label would be two nodes)."""
    found = re.findall(r'^  (n\d+) \[label="(.*)"\];$', text, flags=re.M)
    labels = [label for _, label in found]
    assert len(labels) == len(set(labels)), labels
    return {label: node for node, label in found}


def test_dot_two_ownerless_listeners_are_two_nodes_and_nothing_calls_itself() -> None:
    # two listeners nobody is known to own (other users' processes without root), each called by
    # a client nobody is known to own: two server nodes, no "?" loop
    sockets = [listener("tcp", "127.0.0.1", 5432), listener("tcp", "127.0.0.1", 6379)]
    sockets += connection(
        ("127.0.0.1", 40000), ("127.0.0.1", 5432), client_owner=None, server_owner=None
    )
    sockets += connection(
        ("127.0.0.1", 40001), ("127.0.0.1", 6379), client_owner=None, server_owner=None
    )
    edges = build_talk_map(make_snapshot(sockets, [])).edges
    assert len({e.server_app for e in edges}) == 2 and {e.server for e in edges} == {"?"}
    text = format_dot(edges)
    found = re.findall(r'^  (n\d+) \[label="\?"\];$', text, flags=re.M)
    assert len(found) == 3  # one unknown client, two unknown servers
    arrows = re.findall(r"^  (n\d+) -> (n\d+) ", text, flags=re.M)
    assert len(arrows) == 2 and len({dst for _, dst in arrows}) == 2
    assert all(src != dst for src, dst in arrows) and "color=red" not in text


def test_dot_groups_short_lived_clients_by_name() -> None:
    srv = proc(10, "apache2")
    sockets = [listener("tcp", "127.0.0.1", 8095, owners=[srv])]
    clients = [proc(100 + k, "curl") for k in range(3)]
    for k, c in enumerate(clients):
        sockets += connection(
            ("127.0.0.1", 41000 + k), ("127.0.0.1", 8095), client_owner=c, server_owner=srv
        )
    text = format_dot(build_talk_map(make_snapshot(sockets, [srv, *clients])).edges)
    nodes = _nodes(text)
    assert set(nodes) == {"curl (3 processes)", "apache2[10]"}
    assert (
        f'{nodes["curl (3 processes)"]} -> {nodes["apache2[10]"]} [label=":8095/tcp x3"];' in text
    )
