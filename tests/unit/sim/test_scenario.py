"""Call trees: designs, flattening of in-process calls, validation."""

import pytest

from loopscope.errors import UsageError
from loopscope.sim.scenario import (
    Call,
    CallKind,
    DistKind,
    Node,
    Scenario,
    ServiceDist,
    flatten_node,
    make_design,
    validate_scenario,
)

A = ServiceDist(kind=DistKind.CONSTANT, mean_s=0.001)
B = ServiceDist(kind=DistKind.CONSTANT, mean_s=0.002)


def test_flatten_folds_inprocess_calls():
    node = Node(work=A, calls=(Call(kind=CallKind.INPROCESS, target=Node(work=B), count=2),))
    flat = flatten_node(node)
    assert flat.works == (A, B, B)
    assert flat.remote == ()


def test_flatten_keeps_remote_calls_of_inprocess_callees():
    inner = Node(work=B, calls=(Call(kind=CallKind.SELF, target=Node(work=A)),))
    flat = flatten_node(Node(work=A, calls=(Call(kind=CallKind.INPROCESS, target=inner),)))
    assert flat.works == (A, B)
    assert [k for k, _ in flat.remote] == [CallKind.SELF]
    assert flat.local_only and flat.main_only and not flat.nonblocking


def test_designs():
    assert flatten_node(make_design("selfcall", fanout=3)).remote[0][0] is CallKind.SELF
    assert len(flatten_node(make_design("selfcall", fanout=3)).remote) == 3
    assert flatten_node(make_design("async")).nonblocking
    assert (
        flatten_node(make_design("lb")).main_only and not flatten_node(make_design("lb")).local_only
    )
    assert not flatten_node(make_design("pool")).main_only
    with pytest.raises(UsageError):
        make_design("bogus")
    with pytest.raises(UsageError):
        make_design("selfcall", fanout=0)


def test_bimodal_expected():
    d = ServiceDist(kind=DistKind.BIMODAL, mean_s=0.001, slow_s=1.0, slow_prob=0.01)
    assert d.expected_s == pytest.approx(0.99 * 0.001 + 0.01)


@pytest.mark.parametrize(
    "bad",
    [
        {"workers": 0},
        {"arrival_rate_per_s": 0.0},
        {"requests": 0},
        {"call_timeout_s": 0.0},
        {"hop_s": -1.0},
        {"queue_limit": -1},
    ],
)
def test_validate_rejects(bad):
    with pytest.raises(UsageError):
        validate_scenario(Scenario(root=make_design("none"), **bad))
