"""A real lab for the self-call scenario: a WSGI app whose internal calls go over loopback HTTP to
itself, in-process, or to a separate pool; server management (gunicorn gthread or waitress with a fixed
thread pool); an open-loop load generator; a runner that compares designs with the simulation.

Needs the ``lab`` extra: ``pip install 'loopscope[lab]'``. Everything binds 127.0.0.1 only.
"""

from __future__ import annotations

__all__: list[str] = []
