"""The fast engine: a specialised discrete-event loop on a heapq, same semantics as the simpy model
(:mod:`loopscope.sim.model`), about 10x faster. Validated against it in tests/unit/sim/test_engines.py.

Semantics, shared with the simpy model:

* Each instance has a main pool (``workers`` threads) and a separate pool (``pool_workers``), each with
  one FIFO queue. A request arriving at a pool takes a free worker or waits; a full bounded queue
  answers 503 at once; a request that waited longer than ``queue_timeout_s`` is dropped (503) when a
  worker reaches it.
* A worker runs the node's service times (own work + in-process callees), then makes its remote calls
  (all at once if ``parallel``, else one by one). Each HTTP call costs ``hop_s / 2`` on the way out and
  back. Blocking callers hold their worker while they wait; ``async`` callers release it.
* ``call_timeout_s`` bounds the wait for a round of calls; on expiry the caller fails (5xx) and the
  callees still run. Any failed callee fails the caller once all of the round has answered.
* Starvation deadlock: every worker of an instance's main pool blocked on ``self`` calls (which can
  only wait in that same queue), or every main-pool worker of every instance blocked on ``self``/``lb``
  calls.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque

from loopscope.sim.fast_flat import run_flat
from loopscope.sim.result import SimResult, Trace, summarize_trace
from loopscope.sim.sampling import (
    Rng,
    Sampler,
    arrival_times,
    make_int_sampler,
    make_sampler,
    new_rng,
)
from loopscope.sim.scenario import CallKind, FlatNode, Scenario, flatten_node, validate_scenario

__all__ = ["run_fast", "simulate_fast"]

_ENQ, _RESP = 1, 2
_OK, _REJECTED, _ERROR = 0, 1, 2


class _CNode:
    """A FlatNode with its samplers attached and call targets resolved to kinds."""

    __slots__ = ("local_only", "main_only", "nonblocking", "parallel", "remote", "samplers")

    def __init__(self, flat: FlatNode, rng: Rng, cache: dict[object, Sampler]):
        self.samplers = [self._sampler(d, rng, cache) for d in flat.works]
        self.remote = [(kind, _CNode(target, rng, cache)) for kind, target in flat.remote]
        self.parallel = flat.parallel
        self.nonblocking = flat.nonblocking
        self.local_only = flat.local_only
        self.main_only = flat.main_only

    @staticmethod
    def _sampler(dist: object, rng: Rng, cache: dict[object, Sampler]) -> Sampler:
        if dist not in cache:
            cache[dist] = make_sampler(dist, rng)  # type: ignore[arg-type]
        return cache[dist]


class _Job:
    __slots__ = (
        "blocked",
        "ci",
        "fail",
        "holds",
        "node",
        "parent",
        "pending",
        "pool",
        "ptoken",
        "t_arr",
        "t_block",
        "t_enq",
        "t_start",
        "token",
    )

    def __init__(self, node: _CNode, parent: _Job | None, ptoken: int, t: float) -> None:
        self.node = node
        self.pool = 0
        self.parent = parent
        self.ptoken = ptoken
        self.token = 0
        self.pending = 0
        self.fail = _OK
        self.t_arr = t
        self.t_enq = t
        self.t_start = 0.0
        self.t_block = 0.0
        self.holds = False
        self.blocked = False
        self.ci = 0


def run_fast(sc: Scenario, *, specialise: bool = True) -> Trace:
    """Run ``sc`` in the fast engine and return the raw trace.

    Args:
        sc: the scenario.
        specialise: use the specialised loop of :mod:`loopscope.sim.fast_flat` when the call tree
            has one level (every built-in design); False forces the general loop.

    Raises:
        UsageError: invalid scenario.
    """
    validate_scenario(sc)
    rng = new_rng(sc.seed)
    root = _CNode(flatten_node(sc.root), rng, {})
    m, n, n_pool = sc.instances, sc.workers, sc.pool_workers
    n_req = sc.requests
    hop2 = sc.hop_s / 2.0
    cto, rto, qto, qlim = (
        sc.call_timeout_s,
        sc.request_timeout_s,
        sc.queue_timeout_s,
        sc.queue_limit,
    )
    arrivals = arrival_times(sc.arrival_rate_per_s, sc.requests, sc.poisson, rng)
    pick_instance = make_int_sampler(m, rng)
    free = [n, n_pool] * m
    queues: list[deque[_Job]] = [deque() for _ in range(2 * m)]
    # Service ends have random times: a heap. Hops and timeouts have constant offsets, so they arrive
    # in time order: plain FIFOs, much cheaper than heap operations.
    heap: list[tuple[float, int, _Job]] = []
    hops: deque[tuple[float, int, _Job, int]] = deque()
    timeouts: deque[tuple[float, _Job, int]] = deque()
    push, pop = heapq.heappush, heapq.heappop
    seq = itertools.count().__next__
    tr = Trace(engine="fast", offered=n_req, last_arrival_s=arrivals[-1])
    if specialise and all(not target.remote for _, target in root.remote):
        run_flat(sc, root, arrivals, pick_instance, tr)
        return tr
    lat = tr.latencies_s
    bl_local = [0] * m
    state = {"bl_main": 0, "dl_local": 0, "dl_on": False, "dl_since": 0.0, "n_blocked": 0}

    def deadlock_check(t: float) -> None:
        on = state["dl_local"] > 0 or state["bl_main"] == m * n
        if on and not state["dl_on"]:
            state["dl_on"] = True
            state["dl_since"] = t
            tr.deadlock_episodes += 1
        elif not on and state["dl_on"]:
            state["dl_on"] = False
            tr.deadlock_s += t - state["dl_since"]

    def begin(job: _Job, p: int, t: float) -> None:
        job.pool = p
        job.holds = True
        job.t_start = t
        if not p & 1:
            tr.busy_s -= t  # + release time later, + end of run if still held
            tr.started += 1
            if t > job.t_enq:
                tr.queued += 1
                tr.queue_wait_s += t - job.t_enq
        work = 0.0
        for s in job.node.samplers:
            work += s()
        push(heap, (t + work, seq(), job))

    def release(p: int, t: float) -> None:
        q = queues[p]
        while q:
            job = q.popleft()
            if qto is not None and t - job.t_enq > qto:
                if not p & 1:
                    tr.queue_wait_s += t - job.t_enq
                job.fail = _REJECTED
                finish(job, t)
                continue
            begin(job, p, t)
            return
        free[p] += 1

    def enqueue(job: _Job, p: int, t: float) -> None:
        job.t_enq = t
        if free[p] > 0:
            free[p] -= 1
            begin(job, p, t)
            return
        q = queues[p]
        if qlim is not None and len(q) >= qlim:
            job.fail = _REJECTED
            finish(job, t)
            return
        q.append(job)
        if not p & 1 and len(q) > tr.max_queue_len:
            tr.max_queue_len = len(q)

    def issue(job: _Job, t: float) -> None:
        node = job.node
        job.token += 1
        calls = node.remote if node.parallel else (node.remote[job.ci],)
        job.pending = len(calls)
        home = job.pool & ~1
        for kind, target in calls:
            child = _Job(target, job, job.token, t)
            if kind is CallKind.LB:
                p = 2 * pick_instance()
            elif kind is CallKind.POOL:
                p = home + 1
            else:
                p = home
            if hop2 > 0.0:
                hops.append((t + hop2, _ENQ, child, p))
            else:
                enqueue(child, p, t)
        if cto is not None:
            timeouts.append((t + cto, job, job.token))
        if job.holds and node.nonblocking:
            job.holds = False
            if not job.pool & 1:
                tr.busy_s += t
            release(job.pool, t)
        elif job.holds and not job.blocked and not job.pool & 1:
            job.blocked = True
            tr.blocked_s -= t
            state["n_blocked"] += 1
            if node.local_only:
                inst = job.pool >> 1
                bl_local[inst] += 1
                if bl_local[inst] == n:
                    state["dl_local"] += 1
            if node.main_only:
                state["bl_main"] += 1
            deadlock_check(t)

    def finish(job: _Job, t: float) -> None:
        if job.blocked:
            job.blocked = False
            tr.blocked_s += t
            state["n_blocked"] -= 1
            node = job.node
            if node.local_only:
                inst = job.pool >> 1
                if bl_local[inst] == n:
                    state["dl_local"] -= 1
                bl_local[inst] -= 1
            if node.main_only:
                state["bl_main"] -= 1
            deadlock_check(t)
        if job.holds:
            job.holds = False
            if not job.pool & 1:
                tr.busy_s += t
            release(job.pool, t)
        if job.parent is not None:
            hops.append((t + hop2, _RESP, job, 0))
            return
        latency = t - job.t_arr
        if rto is not None and latency > rto:
            tr.timeouts += 1
        elif job.fail == _REJECTED:
            tr.rejected += 1
        elif job.fail == _ERROR:
            tr.errors += 1
        else:
            tr.ok += 1
            lat.append(latency)

    inf = float("inf")
    horizon = arrivals[-1] + rto if rto is not None else inf
    i_arr = 0
    next_arr = arrivals[0]
    t = 0.0
    while True:
        t_svc = heap[0][0] if heap else inf
        t_hop = hops[0][0] if hops else inf
        t_out = timeouts[0][0] if timeouts else inf
        t_next = min(t_svc, t_hop, t_out, next_arr)
        if t_next > horizon:
            t = horizon
            break
        if t_next == inf:
            break
        t = t_next
        if t == t_svc:
            job = pop(heap)[2]
            if job.node.remote:
                job.ci = 0
                issue(job, t)
            else:
                finish(job, t)
        elif t == t_hop:
            _, etype, job, p = hops.popleft()
            if etype == _ENQ:
                enqueue(job, p, t)
                continue
            parent = job.parent
            assert parent is not None
            if job.ptoken != parent.token or parent.pending == 0:
                continue
            parent.pending -= 1
            if job.fail != _OK:
                parent.fail = _ERROR
            if parent.pending == 0:
                pnode = parent.node
                if not pnode.parallel and parent.fail == _OK and parent.ci + 1 < len(pnode.remote):
                    parent.ci += 1
                    issue(parent, t)
                else:
                    finish(parent, t)
        elif t == t_out:
            _, job, token = timeouts.popleft()
            if job.token == token and job.pending > 0:  # the current round is still out
                tr.call_timeouts += 1
                job.fail = _ERROR
                job.pending = 0
                job.token += 1
                finish(job, t)
        else:
            job = _Job(root, None, 0, t)
            enqueue(job, 2 * pick_instance() if m > 1 else 0, t)
            i_arr += 1
            next_arr = arrivals[i_arr] if i_arr < n_req else inf
    tr.end_s = horizon if rto is not None else max(t, arrivals[-1])
    if state["dl_on"]:
        tr.deadlock_s += tr.end_s - state["dl_since"]
    tr.busy_s += tr.end_s * sum(n - free[p] for p in range(0, 2 * m, 2))  # workers still held
    tr.blocked_s += tr.end_s * state["n_blocked"]
    open_external = n_req - tr.ok - tr.timeouts - tr.rejected - tr.errors
    if rto is not None:
        tr.timeouts += open_external
    else:
        tr.unfinished = open_external
    for p in range(0, 2 * m, 2):
        for job in queues[p]:
            tr.queue_wait_s += tr.end_s - job.t_enq
    return tr


def simulate_fast(sc: Scenario) -> SimResult:
    """Run ``sc`` in the fast engine and summarize it."""
    return summarize_trace(run_fast(sc), sc)
