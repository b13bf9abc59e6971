"""Turn model records into JSON-ready values (pure).

Shapes: dataclasses -> dict of their fields; :class:`~loopscope.model.Endpoint` ->
``{"address": "127.0.0.1", "port": 8080}``; enums -> their value; IP addresses -> str;
:class:`~loopscope.model.NetnsId` -> ``{"dev": D, "ino": I}``; ProcessKey -> ``{"pid": P, "start_ticks": T}``;
tuples/lists/sets -> lists; dict keys -> str.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
from typing import Any

from loopscope import SCHEMA_VERSION

__all__ = ["format_json_document", "json_document", "to_jsonable"]


_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_jsonable(value: Any) -> Any:
    """Convert ``value`` recursively into dicts, lists, str, int, float, bool and None.

    Plain values (exact ``str``/``int``/``float``/``bool``/``None`` types, dicts with str keys, lists)
    are dispatched on their exact type first: a ``--connections`` document holds 50k small dicts.

    Example: ``to_jsonable(Endpoint(IPv4Address("127.0.0.1"), 80)) == {"address": "127.0.0.1", "port": 80}``.
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {
            k if type(k) is str else _key(k): v if type(v) in _PLAIN else to_jsonable(v)
            for k, v in value.items()
        }
    if kind is list:
        return [v if type(v) in _PLAIN else to_jsonable(v) for v in value]
    if isinstance(value, (bool, int, float, str)) and not isinstance(value, enum.Enum):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {name: to_jsonable(getattr(value, name)) for name in value._fields}
    if isinstance(value, dict):
        return {_key(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    return str(value)


def _key(key: Any) -> str:
    if isinstance(key, tuple) and hasattr(key, "_fields") and hasattr(key, "pid"):
        return str(key.pid)
    return str(key)


def json_document(command: str, body: dict[str, Any]) -> dict[str, Any]:
    """Wrap a command's result: ``{"schema_version": 1, "command": command, **body}``."""
    return {"schema_version": SCHEMA_VERSION, "command": command, **to_jsonable(body)}


def format_json_document(command: str, body: dict[str, Any]) -> str:
    """The text every ``--json`` prints: :func:`json_document` with a 2-space indent and a newline.

    Example: ``format_json_document("ports", {"listeners": []})`` ->
    ``'{\\n  "schema_version": 1,\\n  "command": "ports",\\n  "listeners": []\\n}\\n'``.
    """
    return json.dumps(json_document(command, body), indent=2) + "\n"
