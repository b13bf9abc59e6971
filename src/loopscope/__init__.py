"""loopscope: everything a machine says to itself over loopback, and what it costs.

The Python API (see docs/api.md): :func:`snapshot`, :func:`listeners`, :func:`talk_map`, :func:`doctor`
and :func:`probe`, typed, defined in :mod:`loopscope.api`; each imports what it needs when called, so
``import loopscope`` stays light.
"""

from __future__ import annotations

# The subpackage loopscope.doctor (a docstring only) is loaded first: were it loaded later, the import
# system would bind the name ``doctor`` here to it instead of to the function below.
from loopscope import doctor as _doctor_package  # noqa: F401
from loopscope.api import doctor, listeners, probe, snapshot, talk_map

__version__ = "0.1.0"
SCHEMA_VERSION = 1

__all__ = [
    "SCHEMA_VERSION",
    "__version__",
    "doctor",
    "listeners",
    "probe",
    "snapshot",
    "talk_map",
]
