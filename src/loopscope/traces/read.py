"""Read span files: OTLP/JSON (one request per line, the Collector's file exporter, or one document),
Jaeger JSON, Zipkin v2 JSON; the format is recognised from the content.

Malformed input gives one :class:`~loopscope.errors.ParseError` when nothing can be read, or the spans
that could be read with a :class:`~loopscope.model.Gap` per kind of damage.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopscope.errors import ParseError
from loopscope.model import Gap
from loopscope.model.spans import SpanRecord
from loopscope.traces.jaeger import decode_jaeger, looks_like_jaeger
from loopscope.traces.otlp import decode_otlp_json
from loopscope.traces.otlp_json import decode_otlp_json_fast
from loopscope.traces.zipkin import decode_zipkin, looks_like_zipkin

__all__ = ["SpanInput", "decode_document", "loads", "read_spans"]


def _loader() -> Callable[[bytes | str], Any]:
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads


loads: Callable[[bytes | str], Any] = _loader()
"""``orjson.loads`` when orjson is installed (2-3x faster on span files), else ``json.loads``; both raise a
ValueError on malformed JSON. orjson refuses ``NaN``/``Infinity`` literals and integers past 64 bits, which
JSON itself does not allow either."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SpanInput:
    """Spans read from one file or stream."""

    spans: list[SpanRecord]
    """Every span read, in input order."""
    format: str
    """``otlp-json``, ``jaeger``, ``zipkin`` or ``mixed``."""
    documents: int
    """JSON documents read (lines in line mode)."""
    gaps: tuple[Gap, ...] = field(default_factory=tuple)
    """What could not be read."""


def decode_document(doc: Any, *, strict: bool = False) -> tuple[str, list[SpanRecord], int]:
    """(format, spans, malformed spans skipped) of one parsed JSON document.

    OTLP/JSON is decoded by :func:`~loopscope.traces.otlp_json.decode_otlp_json_fast`, or with ``strict``
    by the official protobuf ``json_format`` decoder (same spans, ~50x slower).

    Raises:
        ValueError: not OTLP, Jaeger or Zipkin, or an OTLP request protobuf refuses.
        UsageError: OTLP input without opentelemetry-proto installed.
    """
    if isinstance(doc, dict) and ("resourceSpans" in doc or "resource_spans" in doc):
        return "otlp-json", (decode_otlp_json(doc) if strict else decode_otlp_json_fast(doc)), 0
    if looks_like_jaeger(doc):
        return ("jaeger", *decode_jaeger(doc))
    if looks_like_zipkin(doc):
        return ("zipkin", *decode_zipkin(doc))
    if isinstance(doc, dict) and not doc:
        return "otlp-json", [], 0  # an empty request: {}
    raise ValueError("not OTLP/JSON (resourceSpans), Jaeger JSON (data/spans) or Zipkin v2 JSON")


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield lineno, line


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Cyclic GC off while spans pile up (restored after): the records and parsed documents hold no
    cycles, refcounting frees the documents, and full collections over a growing heap of records cost
    ~20% of a 100k-span read and more at 1M."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def read_spans(path: str | Path, *, strict: bool = False) -> SpanInput:
    """Spans of a file, whatever of the three formats it holds.

    A file whose first non-empty line is a JSON document on its own is read line by line (a bad line is
    skipped and counted); otherwise the whole file is one document. ``strict``: OTLP/JSON through the
    official protobuf decoder (see :func:`decode_document`). Cyclic GC is paused while reading.

    Raises:
        ParseError: unreadable file, or no line/document could be decoded.
        UsageError: OTLP input without opentelemetry-proto installed.
    """
    with _gc_paused():
        return _read_spans(Path(path), strict=strict)


def _read_spans(path: Path, *, strict: bool) -> SpanInput:
    """The body of :func:`read_spans`."""
    try:
        first = next(_lines(path), None)
    except OSError as exc:
        raise ParseError(exc.strerror or str(exc), path=str(path)) from exc
    if first is None:
        raise ParseError("empty file: no spans", path=str(path))
    try:
        loads(first[1])
        line_mode = True
    except ValueError:
        line_mode = False
    if not line_mode:
        try:
            doc = loads(path.read_bytes())
            fmt, spans, skipped = decode_document(doc, strict=strict)
        except (ValueError, RecursionError) as exc:
            raise ParseError(_one_line(exc), path=str(path)) from exc
        return SpanInput(
            spans=spans,
            format=fmt,
            documents=1,
            gaps=(_skipped_gap(skipped),) if skipped else (),
        )
    spans = []
    formats: set[str] = set()
    bad = 0
    skipped = 0
    first_bad: ParseError | None = None
    documents = 0
    for lineno, line in _lines(path):
        documents += 1
        try:
            fmt, more, n = decode_document(loads(line), strict=strict)
        except (ValueError, RecursionError) as exc:
            bad += 1
            if first_bad is None:
                first_bad = ParseError(
                    _one_line(exc),
                    path=str(path),
                    lineno=lineno,
                    line=line[:80].decode("utf-8", "replace"),
                )
            continue
        formats.add(fmt)
        spans.extend(more)
        skipped += n
    if bad == documents and first_bad is not None:
        raise first_bad
    gaps: list[Gap] = []
    if bad and first_bad is not None:
        gaps.append(
            Gap(
                what=f"{bad} of {documents} lines",
                reason=f"malformed, skipped (first: {first_bad})",
                count=bad,
            )
        )
    if skipped:
        gaps.append(_skipped_gap(skipped))
    fmt = formats.pop() if len(formats) == 1 else "mixed"
    return SpanInput(spans=spans, format=fmt, documents=documents, gaps=tuple(gaps))


def _skipped_gap(skipped: int) -> Gap:
    return Gap(
        what=f"{skipped} spans",
        reason="malformed (missing or non-hex ids, non-numeric times), skipped",
        count=skipped,
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
