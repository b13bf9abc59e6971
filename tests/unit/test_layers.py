"""Import direction: every import inside loopscope points down the layers of the design.

front-ends (cli/, tui/, report/, exporter/; cli/ may start the others, no other front-end imports one)
  -> features (watch/, doctor/, probes/, bench/, sim/, lab/, traces/), each only its own package
  -> collect -> backends/ -> model/
analysis/ and render/ are pure: analysis/ imports model/, analysis/, errors; render/ also analysis/.
errors.py is importable by all and imports nothing of loopscope; testing/ may import anything.
Imports inside functions count too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import loopscope

SRC = Path(loopscope.__file__).parent

FRONT_ENDS = {"cli", "tui", "report", "exporter", "api"}  # api: the Python API, beside the CLI
FEATURES = {"watch", "doctor", "probes", "bench", "sim", "lab", "traces"}
# What each part may import, besides itself, errors and the package root (``loopscope``).
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "errors": set(),
    "analysis": {"model"},
    "render": {"model", "analysis"},
    "backends": {"model"},
    "collect": {"backends", "model", "analysis"},
    "features": {"collect", "backends", "model", "analysis", "render"},
    "front-ends": {"collect", "backends", "model", "analysis", "render", *FEATURES},
    "testing": {"*"},
    "__init__": {"api", "doctor"},  # re-exports the Python API; loads the doctor/ docstring first
    "schemas": set(),  # JSON Schemas of the --json documents: data, no code
    "__main__": {"*"},  # ``python -m loopscope``: the entry point runs the CLI
}

# Real dependencies that cross the lines above, each with its reason. Key: (importing module, imported
# part). Keep it short; an entry whose import is gone fails test_allow_list_is_current.
ALLOW: dict[tuple[str, str], str] = {
    ("loopscope.lab.runner", "sim"): (
        "lab validates the simulator against real servers: it runs sim's engine on the scenario it"
        " measured and compares the curves (a real cross-feature dependency)"
    ),
}


def _part(module: str) -> str:
    """``loopscope.analysis.watch.report`` -> ``analysis``; ``loopscope`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(part: str) -> str:
    if part in FRONT_ENDS:
        return "front-ends"
    if part in FEATURES:
        return "features"
    return part


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _is_submodule(name: str) -> bool:
    return (SRC / f"{name}.py").exists() or (SRC / name / "__init__.py").exists()


def _imported(node: ast.AST, path: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level == 0:
            base = node.module or ""
        else:
            package = _module_name(path).split(".")
            if path.name != "__init__.py":
                package = package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, node.module] if node.module else package)
        if base == "loopscope":  # from loopscope import collect, errors, SCHEMA_VERSION
            return [
                f"loopscope.{alias.name}" if _is_submodule(alias.name) else "loopscope"
                for alias in node.names
            ]
        return [base]
    return []


def _allowed(importer: str, imported: str) -> bool:
    src_part, dst_part = _part(importer), _part(imported)
    if dst_part in ("errors", "__init__") or src_part == dst_part:
        return True
    if src_part == "cli" and _layer(dst_part) == "front-ends":
        return (
            True  # the CLI is the entry point that starts the other front-ends (exporter, tui...)
        )
    allowed = ALLOWED.get(_layer(src_part))
    if allowed is None:
        return False  # a new top-level part: give it a place above
    return "*" in allowed or dst_part in allowed


def violations() -> list[tuple[str, int, str, str]]:
    """(importing module, line, imported module, part) for every import that points the wrong way."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        importer = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            for imported in _imported(node, path):
                if imported != "loopscope" and not imported.startswith("loopscope."):
                    continue
                if _allowed(importer, imported):
                    continue
                out.append((importer, getattr(node, "lineno", 0), imported, _part(imported)))
    return out


def test_imports_point_down() -> None:
    bad = [
        f"{mod}:{line} imports {imported} ({_layer(_part(mod))} -> {_layer(part)})"
        for mod, line, imported, part in violations()
        if (mod, part) not in ALLOW
    ]
    assert not bad, "imports that point up or across features:\n" + "\n".join(bad)


def test_allow_list_is_current() -> None:
    present = {(mod, part) for mod, _line, _imp, part in violations()}
    stale = [key for key in ALLOW if key not in present]
    assert not stale, f"allow-list entries whose import is gone: {stale}"


def test_every_top_level_part_has_a_layer() -> None:
    parts = {
        p.relative_to(SRC).parts[0].removesuffix(".py")
        for p in SRC.iterdir()
        if p.name != "__pycache__" and (p.suffix == ".py" or p.is_dir())
    }
    unknown = {p for p in parts if _layer(p) not in ALLOWED and p != "py.typed"}
    assert not unknown, f"give these a layer in tests/unit/test_layers.py: {sorted(unknown)}"


@pytest.mark.parametrize(
    ("importer", "imported", "ok"),
    [
        ("loopscope.cli.watch", "loopscope.watch.session", True),
        ("loopscope.watch.session", "loopscope.cli.common", False),
        ("loopscope.analysis.watch.report", "loopscope.model.records", True),
        ("loopscope.analysis.talkmap", "loopscope.collect", False),
        ("loopscope.model.records", "loopscope.analysis.scope", False),
        ("loopscope.probes.run", "loopscope.doctor.gather", False),
        ("loopscope.backends.linux.rtnl", "loopscope.errors", True),
        ("loopscope.testing.record", "loopscope.cli.app", True),
        ("loopscope.cli.exporter", "loopscope.exporter.serve", True),
        ("loopscope.exporter.serve", "loopscope.cli.common", False),
    ],
)
def test_rule(importer: str, imported: str, ok: bool) -> None:
    assert _allowed(importer, imported) is ok
