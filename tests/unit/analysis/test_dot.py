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
    assert '"nginx[10]" -> "app[20]" [label=":8000/tcp x1"];' in text
    assert '"app[20]" -> "app[20]" [label=":8000/tcp x1", color=red' in text
