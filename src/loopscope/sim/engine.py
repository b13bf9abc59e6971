"""The fast engine: a discrete-event loop on a heapq, same semantics as the simpy reference model
(:mod:`loopscope.sim.model`), about 8x faster. Checked against it in tests/unit/sim/test_validation.py.

It runs one-level call trees: a root whose remote callees make no remote calls of their own (in-process
calls fold into their caller at any depth). That is every design of
:func:`~loopscope.sim.scenario.make_design`, so every scenario of ``loopscope simulate`` and ``lab``;
deeper trees of remote calls run in the simpy model.

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

Jobs are plain lists with fixed slots (cheaper than objects in the hot loop). Pools are numbered
``2 * instance`` (main) and ``2 * instance + 1`` (separate pool).

Root job slots: 0 kind=0, 1 token, 2 pending, 3 fail, 4 t_arr, 5 t_enq, 6 t_start, 7 pool, 8 holds,
9 blocked, 10 ci (next sequential call), 11 unused.
Leaf job slots: 0 kind=1, 1 parent, 2 parent token, 3 call index, 4 t_enq, 5 t_start, 6 pool, 7 fail.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from loopscope.errors import UsageError
from loopscope.sim.result import SimResult, Trace, summarize_trace
from loopscope.sim.sampling import Sampler, arrival_times, make_int_sampler, make_sampler, new_rng
from loopscope.sim.scenario import CallKind, FlatNode, Scenario, flatten_node, validate_scenario

__all__ = ["run_fast", "simulate_fast"]

_OK, _REJECTED, _ERROR = 0, 1, 2
_DEST = {CallKind.SELF: 0, CallKind.ASYNC: 0, CallKind.POOL: 1, CallKind.LB: 2}
"""Where a call goes: 0 the caller's main pool, 1 the caller's separate pool, 2 a random instance."""
_INF = float("inf")
_push, _pop = heapq.heappush, heapq.heappop
Job = list[Any]


def _summed(works: tuple[object, ...], rng: Any, cache: dict[object, Sampler]) -> Sampler:
    """One sampler for the service times run in one thread (samplers shared per distribution)."""
    samplers = []
    for dist in works:
        if dist not in cache:
            cache[dist] = make_sampler(dist, rng)  # type: ignore[arg-type]
        samplers.append(cache[dist])
    if len(samplers) == 1:
        return samplers[0]
    return lambda: sum(s() for s in samplers)


class _Run:
    """The state of one run and its event handlers; :meth:`loop` drives them."""

    __slots__ = (
        "all_calls",
        "arrivals",
        "bl_local",
        "bl_main",
        "blocked_s",
        "busy",
        "call_timeouts",
        "cto",
        "dest",
        "dl_local",
        "dl_on",
        "dl_since",
        "dl_time",
        "episodes",
        "errors",
        "free",
        "heap",
        "hop2",
        "hops",
        "last_timeout",
        "lat",
        "leaf_work",
        "local_only",
        "m",
        "main_only",
        "maxq",
        "n",
        "n_blocked",
        "n_remote",
        "nonblocking",
        "ok",
        "parallel",
        "pick_instance",
        "qlim",
        "qto",
        "queued",
        "queues",
        "qwait",
        "rejected",
        "root_work",
        "rto",
        "seq",
        "started",
        "timeouts",
        "timeouts_ext",
    )

    def __init__(
        self,
        sc: Scenario,
        root: FlatNode,
        works: tuple[Sampler, list[Sampler], Callable[[], int]],
        arrivals: list[float],
        lat: list[float],
    ) -> None:
        self.root_work, self.leaf_work, self.pick_instance = works
        self.m, self.n, self.arrivals, self.lat = sc.instances, sc.workers, arrivals, lat
        self.hop2 = sc.hop_s / 2.0
        self.cto, self.rto = sc.call_timeout_s, sc.request_timeout_s
        self.qto, self.qlim = sc.queue_timeout_s, sc.queue_limit
        self.n_remote = len(root.remote)
        self.all_calls = range(self.n_remote)
        self.dest = [_DEST[kind] for kind, _ in root.remote]
        self.parallel, self.nonblocking = root.parallel, root.nonblocking
        self.local_only, self.main_only = root.local_only, root.main_only
        self.free = [sc.workers, sc.pool_workers] * sc.instances
        self.queues: list[deque[Job]] = [deque() for _ in range(2 * sc.instances)]
        # Service ends have random times: a heap. Hops and timeouts have constant offsets, so they
        # arrive in time order: plain FIFOs, much cheaper than heap operations.
        self.heap: list[tuple[float, int, Job]] = []
        self.hops: deque[tuple[float, int, Job, int]] = (
            deque()
        )  # (t, 0 enqueue/1 answer, job, pool)
        self.timeouts: deque[tuple[float, Job, int]] = deque()
        self.seq = itertools.count().__next__
        self.bl_local = [0] * sc.instances
        self.bl_main = self.dl_local = self.n_blocked = 0
        self.dl_on, self.dl_since, self.dl_time = False, 0.0, 0.0
        self.started = self.queued = self.maxq = 0
        self.busy = self.blocked_s = self.qwait = 0.0  # busy/blocked: minus start, plus end times
        self.ok = self.timeouts_ext = self.rejected = self.errors = 0
        self.call_timeouts = self.episodes = 0
        self.last_timeout = 0.0  # stale timeouts are skipped, but the clock runs to the last one

    # -- workers and queues ------------------------------------------------------------------------
    def start(self, job: Job, p: int, t: float) -> None:
        """A worker of pool ``p`` picks ``job`` up at ``t``: schedule the end of its service."""
        leaf = job[0]
        if not p & 1:
            self.busy -= t  # + release time later, + end of run if still held
            self.started += 1
            t_enq = job[4] if leaf else job[5]
            if t > t_enq:
                self.queued += 1
                self.qwait += t - t_enq
        if leaf:
            job[5] = t
            job[6] = p
            _push(self.heap, (t + self.leaf_work[job[3]](), self.seq(), job))
        else:
            job[6] = t
            job[7] = p
            job[8] = True
            _push(self.heap, (t + self.root_work(), self.seq(), job))

    def arrive(self, job: Job, p: int, t: float) -> None:
        """``job`` reaches pool ``p``: a free worker, the queue, or a 503 when the queue is full."""
        if self.free[p] > 0:
            self.free[p] -= 1
            self.start(job, p, t)
            return
        q = self.queues[p]
        if self.qlim is not None and len(q) >= self.qlim:
            self.fail_unstarted(job, t)
            return
        q.append(job)
        if not p & 1 and len(q) > self.maxq:
            self.maxq = len(q)

    def fail_unstarted(self, job: Job, t: float) -> None:
        """``job`` is turned away (full queue, or queued too long): a leaf answers 503 to its caller."""
        if job[0]:
            job[7] = _REJECTED
            self.hops.append((t + self.hop2, 1, job, 0))
        elif self.rto is not None and t - job[4] > self.rto:
            self.timeouts_ext += 1
        else:
            self.rejected += 1

    def release(self, p: int, t: float) -> None:
        """A worker of pool ``p`` is free at ``t``: it takes the next queued job still in time."""
        q = self.queues[p]
        while q:
            job = q.popleft()
            t_enq = job[4 if job[0] else 5]
            if self.qto is not None and t - t_enq > self.qto:
                if not p & 1:
                    self.qwait += t - t_enq
                self.fail_unstarted(job, t)
                continue
            self.start(job, p, t)
            return
        self.free[p] += 1

    # -- blocking and deadlocks --------------------------------------------------------------------
    def deadlock_check(self, t: float) -> None:
        """Open or close a starvation-deadlock episode at ``t``."""
        on = self.dl_local > 0 or self.bl_main == self.m * self.n
        if on and not self.dl_on:
            self.dl_on, self.dl_since = True, t
            self.episodes += 1
        elif not on and self.dl_on:
            self.dl_on = False
            self.dl_time += t - self.dl_since

    # -- root requests -----------------------------------------------------------------------------
    def issue(self, job: Job, t: float) -> None:
        """The root ``job`` sends its next round of calls (all of them, or the next sequential one)."""
        job[1] += 1
        token = job[1]
        home = job[7] & ~1
        indices = self.all_calls if self.parallel else (job[10],)
        job[2] = len(indices)
        hop2, dest, hops = self.hop2, self.dest, self.hops
        for i in indices:
            d = dest[i]
            p = home + d if d < 2 else 2 * self.pick_instance()
            leaf = [1, job, token, i, t + hop2, 0.0, p, _OK]
            if hop2 > 0.0:
                hops.append((t + hop2, 0, leaf, p))
            else:
                self.arrive(leaf, p, t)
        if self.cto is not None:
            self.last_timeout = t + self.cto
            self.timeouts.append((self.last_timeout, job, token))
        if job[8] and self.nonblocking:
            job[8] = False
            if not job[7] & 1:
                self.busy += t
            self.release(job[7], t)
        elif job[8] and not job[9]:  # the worker blocks on the calls
            job[9] = True
            self.blocked_s -= t
            self.n_blocked += 1
            if self.local_only:
                inst = job[7] >> 1
                self.bl_local[inst] += 1
                if self.bl_local[inst] == self.n:
                    self.dl_local += 1
            if self.main_only:
                self.bl_main += 1
            if self.local_only or self.main_only:
                self.deadlock_check(t)

    def finish_root(self, job: Job, t: float) -> None:
        """The root ``job`` answers at ``t``: free its worker, count it as ok, error or timeout."""
        if job[9]:  # the worker stops blocking
            job[9] = False
            self.blocked_s += t
            self.n_blocked -= 1
            if self.local_only:
                inst = job[7] >> 1
                if self.bl_local[inst] == self.n:
                    self.dl_local -= 1
                self.bl_local[inst] -= 1
            if self.main_only:
                self.bl_main -= 1
            if self.local_only or self.main_only:
                self.deadlock_check(t)
        if job[8]:
            job[8] = False
            self.busy += t
            p = job[7]
            if self.queues[p]:
                self.release(p, t)
            else:
                self.free[p] += 1
        latency = t - job[4]
        if self.rto is not None and latency > self.rto:
            self.timeouts_ext += 1
        elif job[3] == _ERROR:
            self.errors += 1
        else:
            self.ok += 1
            self.lat.append(latency)

    # -- events ------------------------------------------------------------------------------------
    def on_service_end(self, t: float) -> None:
        """The earliest service ends: a leaf answers after half a hop, a root calls out or answers."""
        job = _pop(self.heap)[2]
        if job[0]:
            p = job[6]
            if not p & 1:
                self.busy += t
            if self.queues[p]:
                self.release(p, t)
            else:
                self.free[p] += 1
            self.hops.append((t + self.hop2, 1, job, 0))
        elif self.n_remote:
            job[10] = 0
            self.issue(job, t)
        else:
            self.finish_root(job, t)

    def on_hop(self, t: float) -> None:
        """The earliest hop lands: a call reaches its pool, or an answer reaches its caller."""
        _, etype, job, p = self.hops.popleft()
        if etype == 0:
            free = self.free
            if free[p] > 0:
                free[p] -= 1
                self.start(job, p, t)
            else:
                self.arrive(job, p, t)
            return
        parent = job[1]
        if job[2] != parent[1] or parent[2] == 0:
            return  # an answer to a round that already timed out
        parent[2] -= 1
        if job[7] != _OK:
            parent[3] = _ERROR
        if parent[2] == 0:
            if not self.parallel and parent[3] == _OK and parent[10] + 1 < self.n_remote:
                parent[10] += 1
                self.issue(parent, t)
            else:
                self.finish_root(parent, t)

    def on_timeout(self, t: float) -> None:
        """The earliest call timeout of a round still waiting expires: the root fails (5xx)."""
        _, job, _token = self.timeouts.popleft()
        self.call_timeouts += 1
        job[3] = _ERROR
        job[2] = 0
        job[1] += 1
        self.finish_root(job, t)

    def on_arrival(self, t: float) -> None:
        """An external request arrives at a random instance's main pool."""
        job = [0, 0, 0, _OK, t, t, 0.0, 0, False, False, 0, 0.0]
        p = 2 * self.pick_instance() if self.m > 1 else 0
        free = self.free
        if free[p] > 0:
            free[p] -= 1
            self.start(job, p, t)
        else:
            self.arrive(job, p, t)

    def next_timeout(self) -> float:
        """Time of the earliest timeout of a round still waiting (``inf`` when none); drops the due
        timeouts of rounds that already answered without a loop turn each."""
        timeouts = self.timeouts
        while timeouts:
            head = timeouts[0]
            if head[1][1] == head[2] and head[1][2] > 0:
                return head[0]
            timeouts.popleft()
        return _INF

    def loop(self) -> float:
        """Run every event up to the horizon (last arrival + client timeout); the time it stopped."""
        heap, hops, timeouts, arrivals = self.heap, self.hops, self.timeouts, self.arrivals
        on_end, on_hop, on_timeout, on_arrival = (
            self.on_service_end,
            self.on_hop,
            self.on_timeout,
            self.on_arrival,
        )
        horizon = arrivals[-1] + self.rto if self.rto is not None else _INF
        n_req, i_arr, next_arr, t = len(arrivals), 0, arrivals[0], 0.0
        while True:
            # earliest source; on ties: service end, then hop, then timeout, then arrival
            t_next, handler = next_arr, on_arrival
            if timeouts and timeouts[0][0] <= t_next:
                t_due = self.next_timeout()
                if t_due <= t_next and t_due != _INF:
                    t_next, handler = t_due, on_timeout
            if hops and hops[0][0] <= t_next:
                t_next, handler = hops[0][0], on_hop
            if heap and heap[0][0] <= t_next:
                t_next, handler = heap[0][0], on_end
            if t_next > horizon:
                return horizon
            if t_next == _INF:
                return t
            t = t_next
            handler(t)
            if handler is on_arrival:
                i_arr += 1
                next_arr = arrivals[i_arr] if i_arr < n_req else _INF

    def fill(self, tr: Trace, t: float) -> None:
        """Write the counters into ``tr``; ``t`` is where :meth:`loop` stopped."""
        n_req = len(self.arrivals)
        if self.rto is not None:
            tr.end_s = t
        else:
            tr.end_s = max(t, self.arrivals[-1], self.last_timeout)
        if self.dl_on:
            self.dl_time += tr.end_s - self.dl_since
        tr.ok, tr.rejected, tr.errors = self.ok, self.rejected, self.errors
        tr.call_timeouts = self.call_timeouts
        open_external = n_req - self.ok - self.timeouts_ext - self.rejected - self.errors
        if self.rto is not None:
            tr.timeouts = self.timeouts_ext + open_external
        else:
            tr.timeouts, tr.unfinished = self.timeouts_ext, open_external
        tr.deadlock_episodes, tr.deadlock_s = self.episodes, self.dl_time
        mains = range(0, 2 * self.m, 2)
        held = sum(self.n - self.free[p] for p in mains)  # workers still held at the end
        tr.busy_s = self.busy + tr.end_s * held
        tr.blocked_s = self.blocked_s + tr.end_s * self.n_blocked
        tr.started, tr.queued, tr.max_queue_len = self.started, self.queued, self.maxq
        qwait = self.qwait
        for p in mains:
            for job in self.queues[p]:
                qwait += tr.end_s - job[4 if job[0] else 5]
        tr.queue_wait_s = qwait


def run_fast(sc: Scenario) -> Trace:
    """Run ``sc`` in the fast engine and return the raw trace.

    Raises:
        UsageError: invalid scenario, or a call tree whose remote callees make remote calls (run
            those in the simpy model, :func:`~loopscope.sim.model.run_simpy`).
    """
    validate_scenario(sc)
    root = flatten_node(sc.root)
    if any(target.remote for _, target in root.remote):
        raise UsageError(
            "the fast engine runs one level of remote calls; use the simpy model (--engine simpy)"
        )
    rng = new_rng(sc.seed)
    cache: dict[object, Sampler] = {}  # one sampler per distribution, shared by every node
    root_work = _summed(root.works, rng, cache)
    leaf_work = [_summed(target.works, rng, cache) for _, target in root.remote]
    arrivals = arrival_times(sc.arrival_rate_per_s, sc.requests, sc.poisson, rng)
    pick_instance = make_int_sampler(sc.instances, rng)
    tr = Trace(engine="fast", offered=sc.requests, last_arrival_s=arrivals[-1])
    run = _Run(sc, root, (root_work, leaf_work, pick_instance), arrivals, tr.latencies_s)
    run.fill(tr, run.loop())
    return tr


def simulate_fast(sc: Scenario) -> SimResult:
    """Run ``sc`` in the fast engine and summarize it."""
    return summarize_trace(run_fast(sc), sc)
