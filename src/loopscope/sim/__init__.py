"""Queueing model of worker pools with internal calls (self-calls, load balancer, in-process, async,
separate pool), with a simpy reference model, a fast heapq event loop, and pure closed forms.

``formulas`` and ``scenario`` are pure (no I/O, no clock); ``model`` needs the ``sim`` extra (simpy);
``plot`` needs the ``plot`` extra (matplotlib).
"""

from __future__ import annotations

__all__: list[str] = []
