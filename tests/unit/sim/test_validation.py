"""The model against closed forms and published results (the issue's two validation tables), and the
fast engine against the simpy reference model."""

import dataclasses

import pytest

from loopscope.errors import UsageError
from loopscope.sim.engine import run_fast, simulate_fast
from loopscope.sim.formulas import fanout_slow_fraction, mmc
from loopscope.sim.model import run_simpy, simulate_simpy
from loopscope.sim.scenario import DistKind, Scenario, ServiceDist, make_design

MU = 100.0  # service rate per worker: exponential 10 ms


@pytest.mark.parametrize(("servers", "rho"), [(1, 0.5), (2, 0.5), (4, 0.7), (8, 0.85), (16, 0.6)])
def test_mmc_within_2pct_of_erlang_c(servers, rho):
    lam = rho * servers * MU
    sc = Scenario(
        root=make_design("none", work=ServiceDist(mean_s=1 / MU)),
        workers=servers,
        arrival_rate_per_s=lam,
        requests=200_000,
        seed=servers,
    )
    got = simulate_fast(sc)
    want = mmc(lam, MU, servers)
    assert got.latency.mean_s == pytest.approx(want.mean_response_s, rel=0.02)
    assert got.utilisation_pct == pytest.approx(want.utilisation_pct, rel=0.02)
    assert got.wait_prob == pytest.approx(want.wait_prob, rel=0.02, abs=0.005)


def test_mmc_simpy_model_within_2pct_of_erlang_c():
    lam = 0.7 * 4 * MU
    sc = Scenario(
        root=make_design("none", work=ServiceDist(mean_s=1 / MU)),
        workers=4,
        arrival_rate_per_s=lam,
        requests=200_000,
        seed=7,
    )
    got = simulate_simpy(sc)
    want = mmc(lam, MU, 4)
    assert got.latency.mean_s == pytest.approx(want.mean_response_s, rel=0.02)
    assert got.wait_prob == pytest.approx(want.wait_prob, rel=0.03)


@pytest.mark.parametrize(("fanout", "requests"), [(100, 4000), (10, 4000), (1, 20_000)])
def test_fanout_tail_at_scale(fanout, requests):
    """Dean & Barroso: leaves slow 1% of the time (1 s instead of 1 ms); with 100 leaves ~63% of
    requests wait for a slow one. Separate, ample pool: no queueing, only the tail."""
    leaf = ServiceDist(kind=DistKind.BIMODAL, mean_s=0.001, slow_s=1.0, slow_prob=0.01)
    root = make_design(
        "pool", fanout=fanout, work=ServiceDist(kind=DistKind.CONSTANT, mean_s=0.0), child_work=leaf
    )
    sc = Scenario(
        root=root,
        workers=64,
        pool_workers=2000,
        arrival_rate_per_s=5.0,
        requests=requests,
        seed=fanout,
    )
    tr = run_fast(sc)
    slow = sum(1 for v in tr.latencies_s if v > 0.5) / len(tr.latencies_s)
    assert tr.ok == requests
    assert slow == pytest.approx(
        fanout_slow_fraction(fanout, 0.01), abs=0.03 if fanout > 1 else 0.003
    )


_DESIGNS = ["none", "selfcall", "lb", "inprocess", "async", "pool"]


@pytest.mark.parametrize("design", _DESIGNS)
@pytest.mark.parametrize("rate", [150.0, 300.0])
def test_fast_engine_matches_simpy_model(design, rate):
    sc = Scenario(
        root=make_design(design, fanout=2),
        workers=8,
        instances=2,
        arrival_rate_per_s=rate,
        requests=4000,
        seed=3,
        call_timeout_s=0.5,
        request_timeout_s=1.0,
        hop_s=0.0003,
    )
    fast, ref = simulate_fast(sc), simulate_simpy(sc)
    assert fast.ok == pytest.approx(ref.ok, rel=0.02, abs=5)
    assert fast.timeouts == pytest.approx(ref.timeouts, rel=0.05, abs=5)
    assert fast.latency.p50_s == pytest.approx(ref.latency.p50_s, rel=0.05)
    assert fast.latency.p99_s == pytest.approx(ref.latency.p99_s, rel=0.05)
    assert fast.utilisation_pct == pytest.approx(ref.utilisation_pct, rel=0.03)
    assert fast.deadlock_episodes == pytest.approx(ref.deadlock_episodes, rel=0.1, abs=2)


def test_fast_engine_matches_simpy_sequential_with_bounded_queue():
    sc = Scenario(
        root=make_design("selfcall", fanout=3, parallel=False),
        workers=6,
        queue_limit=20,
        queue_timeout_s=0.2,
        arrival_rate_per_s=120.0,
        requests=3000,
        seed=5,
        call_timeout_s=0.5,
        request_timeout_s=1.0,
        hop_s=0.0005,
    )
    fast, ref = run_fast(sc), run_simpy(sc)
    assert fast.rejected > 0
    assert fast.max_queue_len <= 20
    for name in ("ok", "rejected", "errors", "timeouts"):
        assert getattr(fast, name) == pytest.approx(getattr(ref, name), rel=0.05, abs=5), name


def test_selfcall_without_timeouts_deadlocks_forever():
    sc = Scenario(
        root=make_design("selfcall", fanout=1),
        workers=4,
        arrival_rate_per_s=300.0,
        requests=2000,
        seed=1,
    )
    r = simulate_fast(sc)
    assert r.deadlock_episodes >= 1
    assert r.unfinished > 0
    assert r.deadlock_s > 0.5 * r.simulated_s
    assert r.utilisation_pct > 95 and r.blocked_pct > 90  # every worker held, blocked, to the end
    ref = simulate_simpy(sc)
    assert ref.unfinished == r.unfinished and ref.deadlock_episodes == r.deadlock_episodes


@pytest.mark.parametrize("design", ["pool", "async", "inprocess"])
def test_other_designs_never_deadlock(design):
    sc = Scenario(
        root=make_design(design, fanout=1),
        workers=4,
        arrival_rate_per_s=300.0,
        requests=2000,
        seed=1,
    )
    r = simulate_fast(sc)
    assert r.deadlock_episodes == 0 and r.unfinished == 0


def test_scaling_out_moves_but_keeps_the_selfcall_knee():
    from loopscope.sim.sweep import run_sweep

    work = ServiceDist(mean_s=0.01)
    base = Scenario(
        root=make_design("none"),
        workers=8,
        call_timeout_s=1.0,
        request_timeout_s=2.0,
        hop_s=0.0004,
        requests=4000,
        seed=2,
    )
    rates = [40.0 * 1.3**i for i in range(14)]
    curves = run_sweep(
        base,
        {
            "selfcall": make_design("selfcall", fanout=2, work=work),
            "inprocess": make_design("inprocess", fanout=2, work=work),
        },
        rates,
        [1, 4],
    )
    knee = {(c.design, c.instances): c.knee_per_s for c in curves}
    assert None not in knee.values()
    assert knee[("selfcall", 4)] > knee[("selfcall", 1)]  # scaling out moves the knee
    assert knee[("selfcall", 1)] < 0.6 * knee[("inprocess", 1)]  # but self-calls bend far earlier
    assert knee[("selfcall", 4)] < 0.6 * knee[("inprocess", 4)]  # at every size
    collapsed = [
        r
        for c in curves
        if c.design == "selfcall"
        for r in c.results
        if r.offered_per_s > 2 * knee[("selfcall", c.instances)]
    ]
    assert collapsed and all(r.throughput_per_s < 0.2 * r.offered_per_s for r in collapsed)


def test_same_seed_same_run_and_replace_keeps_semantics():
    sc = Scenario(
        root=make_design("selfcall", fanout=2),
        workers=4,
        arrival_rate_per_s=100.0,
        requests=2000,
        seed=9,
        call_timeout_s=0.5,
    )
    assert simulate_fast(sc) == simulate_fast(dataclasses.replace(sc))


def test_two_level_tree_runs_in_simpy_not_in_the_fast_engine():
    from loopscope.sim.scenario import Call, CallKind, Node

    leaf = Node(work=ServiceDist(mean_s=0.004))
    mid = Node(
        work=ServiceDist(mean_s=0.003), calls=(Call(kind=CallKind.SELF, target=leaf, count=2),)
    )
    root = Node(
        work=ServiceDist(mean_s=0.002),
        calls=(Call(kind=CallKind.POOL, target=mid), Call(kind=CallKind.INPROCESS, target=leaf)),
    )
    sc = Scenario(
        root=root,
        workers=6,
        pool_workers=4,
        arrival_rate_per_s=150.0,
        requests=4000,
        seed=6,
        call_timeout_s=0.5,
        request_timeout_s=1.0,
        hop_s=0.0004,
    )
    with pytest.raises(UsageError, match="simpy"):
        run_fast(sc)
    ref = simulate_simpy(sc)
    outcomes = ref.ok + ref.timeouts + ref.rejected + ref.errors + ref.unfinished
    assert ref.offered == outcomes == 4000
    assert ref.ok > 0 and ref.call_timeouts > 0  # 4 pool workers each waiting on 2 self-calls
