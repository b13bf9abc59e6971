"""What a simulation runs: a scenario (instances, pools, queue, timeouts, arrivals) and a call tree.

Pure: values only. The engines are :mod:`loopscope.sim.engine` and :mod:`loopscope.sim.model`.

A call tree is a :class:`Node` (the work an endpoint does in its worker thread) with :class:`Call` edges.
Call kinds (:class:`CallKind`):

* ``self``: loopback HTTP to the same instance's pool; the callee needs a worker from the same pool and
  the caller's thread blocks while it waits. The self-call antipattern.
* ``lb``: HTTP to a random instance through a load balancer (an app calling its own public URL).
* ``inprocess``: a function call in the caller's thread: no hop, no extra worker.
* ``async``: HTTP to the same instance, but the caller releases its worker while it waits
  (an event loop or a non-blocking client).
* ``pool``: HTTP to a separate pool (a second server) on the same instance; the caller blocks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from loopscope.errors import UsageError

__all__ = [
    "DESIGNS",
    "Call",
    "CallKind",
    "DistKind",
    "Node",
    "Scenario",
    "ServiceDist",
    "make_design",
    "validate_scenario",
]


class CallKind(str, enum.Enum):
    """How an internal call reaches its callee."""

    SELF = "self"
    LB = "lb"
    INPROCESS = "inprocess"
    ASYNC = "async"
    POOL = "pool"


class DistKind(str, enum.Enum):
    """Service time distributions."""

    EXPONENTIAL = "exponential"
    CONSTANT = "constant"
    LOGNORMAL = "lognormal"
    BIMODAL = "bimodal"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceDist:
    """A service time distribution.

    Example: ``ServiceDist(kind=DistKind.BIMODAL, mean_s=0.001, slow_s=1.0, slow_prob=0.01)`` takes 1 ms,
    or 1 s one time in a hundred (Dean & Barroso's slow leaf).
    """

    kind: DistKind = DistKind.EXPONENTIAL
    """Shape of the distribution."""
    mean_s: float = 0.010
    """Mean service time in seconds (for ``bimodal``: the fast value)."""
    sigma: float = 1.0
    """Shape of ``lognormal`` (standard deviation of the underlying normal); the mean stays ``mean_s``."""
    slow_s: float = 0.0
    """``bimodal`` only: the slow value in seconds."""
    slow_prob: float = 0.0
    """``bimodal`` only: probability of the slow value (0..1)."""

    @property
    def expected_s(self) -> float:
        """The expected value in seconds."""
        if self.kind is DistKind.BIMODAL:
            return (1.0 - self.slow_prob) * self.mean_s + self.slow_prob * self.slow_s
        return self.mean_s


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """An edge of the call tree: ``count`` calls of kind ``kind`` to the endpoint ``target``."""

    kind: CallKind
    """How the call travels (see module docstring)."""
    target: Node
    """What the callee does."""
    count: int = 1
    """How many such calls one execution of the caller makes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """The work of one endpoint: its own service time, then its internal calls."""

    work: ServiceDist = field(default_factory=ServiceDist)
    """Time the endpoint computes in its worker thread before it makes its calls."""
    calls: tuple[Call, ...] = ()
    """Internal calls made after ``work``."""
    parallel: bool = True
    """True: all remote calls go out at once (fan-out) and the caller waits for all; False: one by one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """Everything one simulation run needs.

    Example: ``Scenario(root=make_design("selfcall", fanout=2), workers=8, arrival_rate_per_s=100.0)``.
    """

    root: Node
    """The endpoint that external requests hit."""
    instances: int = 1
    """M, the number of instances behind the load balancer (external arrivals are spread uniformly)."""
    workers: int = 8
    """N, worker threads of each instance's main pool."""
    pool_workers: int = 8
    """Worker threads of each instance's separate pool (``pool`` calls)."""
    queue_limit: int | None = None
    """Most requests waiting per pool; a request arriving at a full queue gets a 503. None: unbounded."""
    queue_timeout_s: float | None = None
    """A request that waited longer than this when a worker picks it is dropped (503). None: never."""
    call_timeout_s: float | None = None
    """Client timeout of internal HTTP calls, seconds; on expiry the caller fails (5xx) and stops
    waiting, the callee still runs. None: wait forever (a starvation deadlock then never ends)."""
    request_timeout_s: float | None = None
    """External clients give up after this many seconds (counted as timeouts). None: never."""
    hop_s: float = 0.0
    """Round-trip cost of one loopback HTTP call in seconds (half on the way out, half back)."""
    arrival_rate_per_s: float = 100.0
    """lambda, external arrivals per second over all instances."""
    poisson: bool = True
    """True: Poisson arrivals (exponential gaps); False: constant gaps of 1/lambda (an open-loop load
    generator such as wrk2 or the lab's)."""
    requests: int = 10_000
    """External requests to simulate."""
    seed: int = 1
    """Random seed; the same seed gives the same run in the same engine."""


DESIGNS: tuple[str, ...] = ("none", "selfcall", "lb", "inprocess", "async", "pool")
"""Names accepted by :func:`make_design`."""

_DESIGN_KIND = {
    "selfcall": CallKind.SELF,
    "lb": CallKind.LB,
    "inprocess": CallKind.INPROCESS,
    "async": CallKind.ASYNC,
    "pool": CallKind.POOL,
}


def make_design(
    name: str,
    *,
    fanout: int = 1,
    work: ServiceDist | None = None,
    child_work: ServiceDist | None = None,
    parallel: bool = True,
) -> Node:
    """Build the call tree of a named design: the root does ``work`` then ``fanout`` calls of the
    design's kind to a leaf that does ``child_work``.

    Args:
        name: one of :data:`DESIGNS`; ``none`` has no internal calls (plain M/G/c).
        fanout: internal calls per external request (>= 1).
        work: the root's own service time (default exponential 10 ms).
        child_work: each callee's service time (default: same as ``work``).
        parallel: fan the calls out at once (True) or one after the other.

    Returns:
        The root :class:`Node`.

    Raises:
        UsageError: unknown design or fanout < 1.
    """
    root_work = work or ServiceDist()
    leaf = Node(work=child_work or root_work)
    if name == "none":
        return Node(work=root_work)
    if name not in _DESIGN_KIND:
        raise UsageError(f"unknown design {name!r}: use one of {', '.join(DESIGNS)}")
    if fanout < 1:
        raise UsageError(f"fanout must be >= 1, got {fanout}")
    call = Call(kind=_DESIGN_KIND[name], target=leaf, count=fanout)
    return Node(work=root_work, calls=(call,), parallel=parallel)


def _check_dist(dist: ServiceDist) -> None:
    if dist.mean_s < 0 or dist.slow_s < 0:
        raise UsageError("service times must be >= 0")
    if not 0.0 <= dist.slow_prob <= 1.0:
        raise UsageError("slow_prob must be in 0..1")
    if dist.kind is DistKind.LOGNORMAL and dist.sigma <= 0:
        raise UsageError("lognormal sigma must be > 0")


def _check_node(node: Node, depth: int) -> None:
    if depth > 16:
        raise UsageError("call tree deeper than 16 levels")
    _check_dist(node.work)
    for call in node.calls:
        if call.count < 1:
            raise UsageError("call count must be >= 1")
        _check_node(call.target, depth + 1)


def validate_scenario(scenario: Scenario) -> None:
    """Check a scenario before a run.

    Raises:
        UsageError: a count or rate out of range, a negative time.
    """
    if scenario.instances < 1 or scenario.workers < 1 or scenario.pool_workers < 1:
        raise UsageError("instances, workers and pool workers must be >= 1")
    if scenario.arrival_rate_per_s <= 0:
        raise UsageError("arrival rate must be > 0")
    if scenario.requests < 1:
        raise UsageError("requests must be >= 1")
    if scenario.queue_limit is not None and scenario.queue_limit < 0:
        raise UsageError("queue limit must be >= 0")
    for name in ("queue_timeout_s", "call_timeout_s", "request_timeout_s"):
        value = getattr(scenario, name)
        if value is not None and value <= 0:
            raise UsageError(f"{name} must be > 0")
    if scenario.hop_s < 0:
        raise UsageError("hop_s must be >= 0")
    _check_node(scenario.root, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class FlatNode:
    """A :class:`Node` with its in-process calls folded in: what one worker thread does, then which
    remote calls it makes. Engines run FlatNodes."""

    works: tuple[ServiceDist, ...]
    """Service times run in this thread: the node's own work, then each in-process callee's."""
    remote: tuple[tuple[CallKind, FlatNode], ...]
    """Remote calls, one entry per call (counts expanded), in order."""
    parallel: bool
    """Remote calls go out at once (True) or one by one."""
    nonblocking: bool
    """Every remote call is ``async``: the worker is released while the calls are out."""
    local_only: bool
    """Every remote call is a ``self`` call (a full pool of such waiters is a local deadlock)."""
    main_only: bool
    """Every remote call goes to a main pool (``self`` or ``lb``)."""


__all__ += ["FlatNode", "flatten_node"]


def flatten_node(node: Node) -> FlatNode:
    """Fold in-process calls into their caller: their work runs in the caller's thread, one after the
    other, and their remote calls become the caller's.

    Example: ``Node(work=a, calls=(Call(kind=INPROCESS, target=Node(work=b), count=2),))`` ->
    ``FlatNode(works=(a, b, b), remote=())``.
    """
    works: list[ServiceDist] = [node.work]
    remote: list[tuple[CallKind, FlatNode]] = []

    def fold(n: Node) -> None:
        for call in n.calls:
            for _ in range(call.count):
                if call.kind is CallKind.INPROCESS:
                    works.append(call.target.work)
                    fold(call.target)
                else:
                    remote.append((call.kind, flatten_node(call.target)))

    fold(node)
    kinds = [kind for kind, _ in remote]
    return FlatNode(
        works=tuple(works),
        remote=tuple(remote),
        parallel=node.parallel,
        nonblocking=bool(kinds) and all(k is CallKind.ASYNC for k in kinds),
        local_only=bool(kinds) and all(k is CallKind.SELF for k in kinds),
        main_only=bool(kinds) and all(k in (CallKind.SELF, CallKind.LB) for k in kinds),
    )
