"""``loopscope exporter``: Prometheus metrics of loopback traffic, counted in the kernel.

Needs the ``exporter`` extra (``pip install 'loopscope[exporter]'``). Layout: :mod:`.metrics` builds
the metric families from values, :mod:`.collector` reads at scrape time, :mod:`.serve` serves
``/metrics`` or writes a textfile.
"""

from __future__ import annotations

__all__: list[str] = []
