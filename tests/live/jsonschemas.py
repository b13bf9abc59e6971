"""The JSON Schemas shipped in ``loopscope/schemas/``, loaded together so that one may refer to another
(``trace.json`` is ``traces.json`` plus the kernel comparison)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    folder = resources.files("loopscope") / "schemas"
    return {p.name[: -len(".json")]: json.loads(p.read_text()) for p in folder.iterdir()}


def shipped() -> list[str]:
    """The commands with a schema, sorted."""
    return sorted(_schemas())


def validator(command: str) -> jsonschema.Draft202012Validator:
    """A draft 2020-12 validator for ``command``'s document, every shipped schema resolvable."""
    schemas = _schemas()
    registry: Registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values()
    )
    jsonschema.Draft202012Validator.check_schema(schemas[command])
    return jsonschema.Draft202012Validator(schemas[command], registry=registry)


def schema_errors(command: str, doc: Any) -> list[str]:
    """Each way ``doc`` breaks ``command``'s schema: ``"path/to/key: message"``; [] when valid."""
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in validator(command).iter_errors(doc)
    ]
