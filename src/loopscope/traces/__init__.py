"""``loopscope traces``: spans in (OTLP file or receiver, Jaeger, Zipkin), self-calls out.

Decoding uses the official ``opentelemetry-proto`` package (the ``traces`` extra); the analysis is pure and
lives in :mod:`loopscope.analysis.traces`.
"""

from __future__ import annotations

__all__: list[str] = []
