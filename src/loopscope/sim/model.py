"""The reference model in simpy: readable processes, the same semantics as :mod:`loopscope.sim.engine`
(see its docstring). Slower; use it to check the fast engine and for small what-if runs.

Needs the ``sim`` extra: ``pip install 'loopscope[sim]'``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from loopscope.errors import BackendUnavailable
from loopscope.sim.result import SimResult, Trace, summarize_trace
from loopscope.sim.sampling import Sampler, arrival_times, make_int_sampler, make_sampler, new_rng
from loopscope.sim.scenario import CallKind, FlatNode, Scenario, flatten_node, validate_scenario

__all__ = ["run_simpy", "simulate_simpy"]

try:
    import simpy
except ImportError as exc:  # pragma: no cover - depends on the environment
    simpy = None  # type: ignore[assignment]
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

_OK, _REJECTED, _ERROR = 0, 1, 2
Proc = Generator[Any, Any, int]


class _Pool:
    def __init__(self, env: Any, workers: int, main: bool) -> None:
        self.res = simpy.Resource(env, capacity=workers)
        self.main = main


class _Model:
    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.env = simpy.Environment()
        self.rng = new_rng(sc.seed)
        self.samplers: dict[object, Sampler] = {}
        self.pick = make_int_sampler(sc.instances, self.rng)
        self.pools = [
            _Pool(self.env, sc.workers if k == 0 else sc.pool_workers, k == 0)
            for _ in range(sc.instances)
            for k in (0, 1)
        ]
        self.tr = Trace(engine="simpy", offered=sc.requests)
        self.bl_local = [0] * sc.instances
        self.bl_main = 0
        self.dl_local = 0
        self.dl_on = False
        self.dl_since = 0.0
        self.n_blocked = 0
        self.waiting: list[dict[object, float]] = [{} for _ in self.pools]

    def sample(self, dist: object) -> float:
        if dist not in self.samplers:
            self.samplers[dist] = make_sampler(dist, self.rng)  # type: ignore[arg-type]
        return self.samplers[dist]()

    def deadlock_check(self) -> None:
        on = self.dl_local > 0 or self.bl_main == self.sc.instances * self.sc.workers
        now = float(self.env.now)
        if on and not self.dl_on:
            self.dl_on, self.dl_since = True, now
            self.tr.deadlock_episodes += 1
        elif not on and self.dl_on:
            self.dl_on = False
            self.tr.deadlock_s += now - self.dl_since

    def block(self, node: FlatNode, inst: int, delta: int) -> None:
        n = self.sc.workers
        if node.local_only:
            if delta > 0:
                self.bl_local[inst] += 1
                self.dl_local += self.bl_local[inst] == n
            else:
                self.dl_local -= self.bl_local[inst] == n
                self.bl_local[inst] -= 1
        if node.main_only:
            self.bl_main += delta
        self.deadlock_check()

    def call(self, kind: CallKind, target: FlatNode, home: int) -> Proc:
        """One HTTP call: half a hop out, the callee's job, half a hop back; returns its outcome."""
        hop2 = self.sc.hop_s / 2
        if kind is CallKind.LB:
            p = 2 * self.pick()
        else:
            p = home + 1 if kind is CallKind.POOL else home
        if hop2 > 0:
            yield self.env.timeout(hop2)
        outcome: int = yield self.env.process(self.job(target, p))
        if hop2 > 0:
            yield self.env.timeout(hop2)
        return outcome

    def job(self, node: FlatNode, p: int) -> Proc:
        """One request at pool ``p``: queue, work, calls; returns _OK, _REJECTED or _ERROR."""
        sc, env, pool, tr = self.sc, self.env, self.pools[p], self.tr
        t_enq = float(env.now)
        res = pool.res
        if (
            sc.queue_limit is not None
            and res.count >= res.capacity
            and len(res.queue) >= sc.queue_limit
        ):
            return _REJECTED
        req = res.request()
        if pool.main:
            tr.max_queue_len = max(tr.max_queue_len, len(res.queue))
            self.waiting[p][req] = t_enq
        yield req
        t_start = float(env.now)
        if pool.main:
            del self.waiting[p][req]
        if pool.main:
            tr.queue_wait_s += t_start - t_enq
        holds = True
        if sc.queue_timeout_s is not None and t_start - t_enq > sc.queue_timeout_s:
            res.release(req)
            return _REJECTED
        if pool.main:
            tr.busy_s -= t_start  # + release time later, + end of run if still held
            tr.started += 1
            tr.queued += t_start > t_enq
        work = sum(self.sample(d) for d in node.works)
        yield env.timeout(work)
        outcome = _OK
        if node.remote:
            rounds = [node.remote] if node.parallel else [(c,) for c in node.remote]
            blocked_at = None
            if node.nonblocking:
                if pool.main:
                    tr.busy_s += float(env.now)
                res.release(req)
                holds = False
            elif pool.main:
                blocked_at = float(env.now)
                tr.blocked_s -= blocked_at
                self.n_blocked += 1
                self.block(node, p >> 1, +1)
            for calls in rounds:
                procs = [env.process(self.call(kind, target, p & ~1)) for kind, target in calls]
                done = env.all_of(procs)
                if sc.call_timeout_s is not None:
                    yield done | env.timeout(sc.call_timeout_s)
                else:
                    yield done
                if not done.triggered:
                    tr.call_timeouts += 1
                    outcome = _ERROR
                    break
                if any(proc.value != _OK for proc in procs):
                    outcome = _ERROR
                    break
            if blocked_at is not None:
                tr.blocked_s += float(env.now)
                self.n_blocked -= 1
                self.block(node, p >> 1, -1)
        if holds:
            if pool.main:
                tr.busy_s += float(env.now)
            res.release(req)
        return outcome

    def external(self, root: FlatNode, p: int) -> Proc:
        t0 = float(self.env.now)
        outcome: int = yield self.env.process(self.job(root, p))
        latency = float(self.env.now) - t0
        rto, tr = self.sc.request_timeout_s, self.tr
        if rto is not None and latency > rto:
            tr.timeouts += 1
        elif outcome == _REJECTED:
            tr.rejected += 1
        elif outcome == _ERROR:
            tr.errors += 1
        else:
            tr.ok += 1
            tr.latencies_s.append(latency)
        return outcome

    def source(self, root: FlatNode, arrivals: list[float]) -> Generator[Any, Any, None]:
        for t_next in arrivals:
            yield self.env.timeout(t_next - float(self.env.now))
            p = 2 * self.pick() if self.sc.instances > 1 else 0
            self.env.process(self.external(root, p))

    def run(self) -> Trace:
        sc, tr = self.sc, self.tr
        root = flatten_node(sc.root)
        arrivals = arrival_times(sc.arrival_rate_per_s, sc.requests, sc.poisson, self.rng)
        tr.last_arrival_s = arrivals[-1]
        self.env.process(self.source(root, arrivals))
        if sc.request_timeout_s is not None:
            self.env.run(until=arrivals[-1] + sc.request_timeout_s)
        else:
            self.env.run()
        tr.end_s = max(float(self.env.now), arrivals[-1])
        if self.dl_on:
            tr.deadlock_s += tr.end_s - self.dl_since
        tr.busy_s += tr.end_s * sum(self.pools[p].res.count for p in range(0, 2 * sc.instances, 2))
        tr.blocked_s += tr.end_s * self.n_blocked
        open_external = sc.requests - tr.ok - tr.timeouts - tr.rejected - tr.errors
        if sc.request_timeout_s is not None:
            tr.timeouts += open_external
        else:
            tr.unfinished = open_external
        for p in range(0, 2 * sc.instances, 2):
            tr.queue_wait_s += sum(tr.end_s - t for t in self.waiting[p].values())
        return tr


def run_simpy(sc: Scenario) -> Trace:
    """Run ``sc`` in the simpy model and return the raw trace.

    Raises:
        BackendUnavailable: simpy is not installed.
        UsageError: invalid scenario.
    """
    if simpy is None:
        raise BackendUnavailable(
            "simpy is missing: pip install 'loopscope[sim]'"
        ) from _IMPORT_ERROR
    validate_scenario(sc)
    return _Model(sc).run()


def simulate_simpy(sc: Scenario) -> SimResult:
    """Run ``sc`` in the simpy model and summarize it."""
    return summarize_trace(run_simpy(sc), sc)
