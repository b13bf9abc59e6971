"""Random streams for the engines: service times drawn in numpy batches, served one float at a time."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from loopscope.errors import BackendUnavailable

try:
    import numpy as np
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise BackendUnavailable("numpy is missing: pip install 'loopscope[sim]'") from exc

from loopscope.sim.scenario import DistKind, ServiceDist

__all__ = [
    "Rng",
    "Sampler",
    "arrival_times",
    "make_int_sampler",
    "make_sampler",
    "new_rng",
]

Rng = np.random.Generator
"""The random generator type the engines share."""


def new_rng(seed: int) -> Rng:
    """A numpy PCG64 generator seeded with ``seed``."""
    return np.random.default_rng(seed)


Sampler = Callable[[], float]
"""Returns the next sample, seconds."""

_BATCH = 65_536


def _draw(dist: ServiceDist, rng: np.random.Generator, size: int) -> list[float]:
    if dist.kind is DistKind.CONSTANT:
        return [dist.mean_s] * size
    if dist.kind is DistKind.EXPONENTIAL:
        return list(rng.exponential(dist.mean_s, size).tolist())
    if dist.kind is DistKind.LOGNORMAL:
        # mean of lognormal(mu, sigma) is exp(mu + sigma^2 / 2): pick mu so that the mean is mean_s
        mu = math.log(dist.mean_s) - dist.sigma**2 / 2 if dist.mean_s > 0 else -math.inf
        if dist.mean_s <= 0:
            return [0.0] * size
        return list(rng.lognormal(mu, dist.sigma, size).tolist())
    slow = rng.random(size) < dist.slow_prob
    return list(np.where(slow, dist.slow_s, dist.mean_s).tolist())


def _stream(dist: ServiceDist, rng: np.random.Generator) -> Iterator[float]:
    while True:
        yield from _draw(dist, rng, _BATCH)


def make_sampler(dist: ServiceDist, rng: np.random.Generator) -> Sampler:
    """A function returning successive draws of ``dist`` (seconds)."""
    return _stream(dist, rng).__next__


def make_int_sampler(high: int, rng: np.random.Generator) -> Callable[[], int]:
    """A function returning uniform integers in ``0..high-1``."""

    def stream() -> Iterator[int]:
        while True:
            yield from rng.integers(0, high, _BATCH).tolist()

    return stream().__next__


def arrival_times(
    rate_per_s: float, count: int, poisson: bool, rng: np.random.Generator
) -> list[float]:
    """``count`` ascending arrival times, seconds: Poisson (exponential gaps) or every 1/rate."""
    if poisson:
        return list(np.cumsum(rng.exponential(1.0 / rate_per_s, count)).tolist())
    return [(i + 1) / rate_per_s for i in range(count)]
