"""The fast engine's specialised loop for one-level call trees (a root whose remote callees make no
remote calls): every design of :func:`~loopscope.sim.scenario.make_design`.

Same semantics and the same random draws in the same order as the general loop in
:mod:`loopscope.sim.fast` (tests check both against the simpy model), but jobs are plain lists with
fixed slots and the hot paths are inlined: about 2x faster.

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

from loopscope.sim.result import Trace
from loopscope.sim.scenario import CallKind, Scenario

__all__ = ["run_flat"]

_OK, _REJECTED, _ERROR = 0, 1, 2
_DEST = {CallKind.SELF: 0, CallKind.ASYNC: 0, CallKind.POOL: 1, CallKind.LB: 2}


def _summed(samplers: list[Callable[[], float]]) -> Callable[[], float]:
    if len(samplers) == 1:
        return samplers[0]
    return lambda: sum(s() for s in samplers)


def run_flat(
    sc: Scenario, root: Any, arrivals: list[float], pick_instance: Callable[[], int], tr: Trace
) -> None:
    """Run ``sc`` (root: a prepared one-level ``_CNode``) and fill ``tr``."""
    m, n = sc.instances, sc.workers
    n_req = len(arrivals)
    hop2 = sc.hop_s / 2.0
    cto, rto, qto, qlim = (
        sc.call_timeout_s,
        sc.request_timeout_s,
        sc.queue_timeout_s,
        sc.queue_limit,
    )
    root_work = _summed(root.samplers)
    remote = root.remote
    n_remote = len(remote)
    leaf_work = [_summed(target.samplers) for _, target in remote]
    dest = [_DEST[kind] for kind, _ in remote]
    parallel, nonblocking = root.parallel, root.nonblocking
    local_only, main_only = root.local_only, root.main_only
    free = [n, sc.pool_workers] * m
    queues: list[deque[list[Any]]] = [deque() for _ in range(2 * m)]
    heap: list[tuple[float, int, list[Any]]] = []
    hops: deque[tuple[float, int, list[Any], int]] = (
        deque()
    )  # (t, 0 enqueue / 1 response, job, pool)
    timeouts: deque[tuple[float, list[Any], int]] = deque()
    push, pop = heapq.heappush, heapq.heappop
    seq = itertools.count().__next__
    lat = tr.latencies_s
    bl_local = [0] * m
    bl_main = dl_local = 0
    dl_on = False
    dl_since = 0.0
    started = queued = maxq = 0
    busy = blocked_s = qwait = 0.0  # busy/blocked: minus start times, plus end times
    n_blocked = 0
    ok = timeouts_ext = rejected = errors = call_timeouts = episodes = 0
    dl_time = 0.0
    last_timeout = 0.0  # stale timeouts are skipped, but the clock still runs to the last one
    inf = float("inf")
    all_calls = range(n_remote)

    def start(job: list[Any], p: int, t: float) -> None:
        nonlocal started, queued, qwait, busy
        if not p & 1:
            busy -= t  # + release time later, + end of run if still held (open holds count)
            started += 1
            if t > job[4 if job[0] else 5]:
                queued += 1
                qwait += t - job[4 if job[0] else 5]
        if job[0]:
            job[5] = t
            job[6] = p
            push(heap, (t + leaf_work[job[3]](), seq(), job))
        else:
            job[6] = t
            job[7] = p
            job[8] = True
            push(heap, (t + root_work(), seq(), job))

    def arrive(job: list[Any], p: int, t: float) -> None:
        nonlocal maxq
        if free[p] > 0:
            free[p] -= 1
            start(job, p, t)
            return
        q = queues[p]
        if qlim is not None and len(q) >= qlim:
            fail_unstarted(job, t)
            return
        q.append(job)
        if not p & 1 and len(q) > maxq:
            maxq = len(q)

    def fail_unstarted(job: list[Any], t: float) -> None:
        nonlocal rejected, timeouts_ext
        if job[0]:
            job[7] = _REJECTED
            hops.append((t + hop2, 1, job, 0))
        elif rto is not None and t - job[4] > rto:
            timeouts_ext += 1
        else:
            rejected += 1

    def release(p: int, t: float) -> None:
        nonlocal qwait
        q = queues[p]
        while q:
            job = q.popleft()
            t_enq = job[4 if job[0] else 5]
            if qto is not None and t - t_enq > qto:
                if not p & 1:
                    qwait += t - t_enq
                fail_unstarted(job, t)
                continue
            start(job, p, t)
            return
        free[p] += 1

    def deadlock_check(t: float) -> None:
        nonlocal dl_on, dl_since, episodes, dl_time
        on = dl_local > 0 or bl_main == m * n
        if on and not dl_on:
            dl_on, dl_since = True, t
            episodes += 1
        elif not on and dl_on:
            dl_on = False
            dl_time += t - dl_since

    def issue(job: list[Any], t: float) -> None:
        nonlocal busy, bl_main, dl_local, blocked_s, n_blocked
        job[1] += 1
        token = job[1]
        home = job[7] & ~1
        indices = all_calls if parallel else (job[10],)
        job[2] = len(indices)
        for i in indices:
            d = dest[i]
            p = home + d if d < 2 else 2 * pick_instance()
            leaf = [1, job, token, i, t + hop2, 0.0, p, _OK]
            if hop2 > 0.0:
                hops.append((t + hop2, 0, leaf, p))
            else:
                arrive(leaf, p, t)
        if cto is not None:
            nonlocal last_timeout
            last_timeout = t + cto
            timeouts.append((last_timeout, job, token))
        if job[8] and nonblocking:
            job[8] = False
            if not job[7] & 1:
                busy += t
            release(job[7], t)
        elif job[8] and not job[9]:
            job[9] = True
            blocked_s -= t
            n_blocked += 1
            if local_only:
                inst = job[7] >> 1
                bl_local[inst] += 1
                if bl_local[inst] == n:
                    dl_local += 1
            if main_only:
                bl_main += 1
            if local_only or main_only:
                deadlock_check(t)

    def finish_root(job: list[Any], t: float) -> None:
        nonlocal busy, blocked_s, n_blocked, bl_main, dl_local, ok, timeouts_ext, rejected, errors
        if job[9]:
            job[9] = False
            blocked_s += t
            n_blocked -= 1
            if local_only:
                inst = job[7] >> 1
                if bl_local[inst] == n:
                    dl_local -= 1
                bl_local[inst] -= 1
            if main_only:
                bl_main -= 1
            if local_only or main_only:
                deadlock_check(t)
        if job[8]:
            job[8] = False
            busy += t
            p = job[7]
            if queues[p]:
                release(p, t)
            else:
                free[p] += 1
        latency = t - job[4]
        if rto is not None and latency > rto:
            timeouts_ext += 1
        elif job[3] == _ERROR:
            errors += 1
        else:
            ok += 1
            lat.append(latency)

    horizon = arrivals[-1] + rto if rto is not None else inf
    i_arr = 0
    next_arr = arrivals[0]
    t = 0.0
    while True:
        # earliest source; on ties: service end, then hop, then timeout, then arrival (as fast.py)
        t_next = next_arr
        kind = 0
        if timeouts and timeouts[0][0] <= t_next:
            # drop due timeouts of rounds that already answered, without a loop turn each
            while timeouts:
                head = timeouts[0]
                if head[1][1] == head[2] and head[1][2] > 0:
                    break
                timeouts.popleft()
            if timeouts and timeouts[0][0] <= t_next:
                t_next = timeouts[0][0]
                kind = 3
        if hops and hops[0][0] <= t_next:
            t_next = hops[0][0]
            kind = 2
        if heap and heap[0][0] <= t_next:
            t_next = heap[0][0]
            kind = 1
        if t_next > horizon:
            t = horizon
            break
        if t_next == inf:
            break
        t = t_next
        if kind == 1:
            job = pop(heap)[2]
            if job[0]:  # a leaf finished: free its worker, answer after half a hop
                p = job[6]
                if not p & 1:
                    busy += t
                if queues[p]:
                    release(p, t)
                else:
                    free[p] += 1
                hops.append((t + hop2, 1, job, 0))
            elif n_remote:
                job[10] = 0
                issue(job, t)
            else:
                finish_root(job, t)
        elif kind == 2:
            _, etype, job, p = hops.popleft()
            if etype == 0:
                if free[p] > 0:
                    free[p] -= 1
                    start(job, p, t)
                else:
                    arrive(job, p, t)
                continue
            parent = job[1]
            if job[2] != parent[1] or parent[2] == 0:
                continue
            parent[2] -= 1
            if job[7] != _OK:
                parent[3] = _ERROR
            if parent[2] == 0:
                if not parallel and parent[3] == _OK and parent[10] + 1 < n_remote:
                    parent[10] += 1
                    issue(parent, t)
                else:
                    finish_root(parent, t)
        elif kind == 3:
            _, job, _token = timeouts.popleft()
            call_timeouts += 1
            job[3] = _ERROR
            job[2] = 0
            job[1] += 1
            finish_root(job, t)
        else:
            job = [0, 0, 0, _OK, t, t, 0.0, 0, False, False, 0, 0.0]
            p = 2 * pick_instance() if m > 1 else 0
            if free[p] > 0:
                free[p] -= 1
                start(job, p, t)
            else:
                arrive(job, p, t)
            i_arr += 1
            next_arr = arrivals[i_arr] if i_arr < n_req else inf
    tr.end_s = horizon if rto is not None else max(t, arrivals[-1], last_timeout)
    if dl_on:
        dl_time += tr.end_s - dl_since
    tr.ok, tr.rejected, tr.errors, tr.call_timeouts = ok, rejected, errors, call_timeouts
    open_external = n_req - ok - timeouts_ext - rejected - errors
    if rto is not None:
        tr.timeouts = timeouts_ext + open_external
    else:
        tr.timeouts, tr.unfinished = timeouts_ext, open_external
    tr.deadlock_episodes, tr.deadlock_s = episodes, dl_time
    busy += tr.end_s * sum(n - free[p] for p in range(0, 2 * m, 2))  # workers still held
    blocked_s += tr.end_s * n_blocked
    tr.busy_s, tr.blocked_s, tr.started, tr.queued, tr.max_queue_len = (
        busy,
        blocked_s,
        started,
        queued,
        maxq,
    )
    for p in range(0, 2 * m, 2):
        for job in queues[p]:
            qwait += tr.end_s - job[4 if job[0] else 5]
    tr.queue_wait_s = qwait
