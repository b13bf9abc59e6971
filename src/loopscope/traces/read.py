"""Read span files: OTLP/JSON (one request per line, the Collector's file exporter, or one document),
Jaeger JSON, Zipkin v2 JSON; the format is recognised from the content.

Malformed input gives one :class:`~loopscope.errors.ParseError` when nothing can be read, or the spans
that could be read with a :class:`~loopscope.model.Gap` per kind of damage.

:func:`read_spans` gives :class:`~loopscope.model.spans.SpanRecord` values; :func:`read_span_rows`, the
path of ``loopscope traces FILE``, gives the same spans as analysis rows, a large file read by two
processes.
"""

from __future__ import annotations

import gc
import json
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from loopscope.analysis.traces.walk import SpanRow, span_row
from loopscope.errors import ParseError
from loopscope.model import Gap
from loopscope.model.spans import SpanRecord
from loopscope.traces.jaeger import decode_jaeger, looks_like_jaeger
from loopscope.traces.otlp import decode_otlp_json
from loopscope.traces.otlp_json import decode_otlp_json_fast
from loopscope.traces.otlp_rows import decode_otlp_json_rows
from loopscope.traces.zipkin import decode_zipkin, looks_like_zipkin

__all__ = [
    "PARALLEL_MIN_BYTES",
    "SpanInput",
    "SpanRows",
    "decode_document",
    "gc_paused",
    "loads",
    "read_span_rows",
    "read_spans",
]


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


@dataclass(frozen=True, slots=True, kw_only=True)
class SpanRows:
    """Spans read from one file or stream as analysis rows (:func:`read_span_rows`)."""

    rows: list[SpanRow]
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
def gc_paused() -> Iterator[None]:
    """Cyclic GC off while spans pile up or are analysed (restored after): records, rows and parsed
    documents hold no cycles, refcounting frees the documents, and full collections over a growing heap
    of records cost ~20% of a 100k-span read and more at 1M (the analysis of 1M rows: ~40%)."""
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
    with gc_paused():
        return _read_spans(Path(path), strict=strict)


def _read_spans(path: Path, *, strict: bool) -> SpanInput:
    """The body of :func:`read_spans`."""
    spans, fmt, documents, gaps = _read(path, partial(decode_document, strict=strict), workers=1)
    return SpanInput(spans=spans, format=fmt, documents=documents, gaps=gaps)


def _decode_rows(
    doc: Any, *, strict: bool, names: dict[str, str]
) -> tuple[str, list[SpanRow], int]:
    """:func:`decode_document` as rows; OTLP/JSON straight to rows when not ``strict``."""
    if not strict and isinstance(doc, dict) and ("resourceSpans" in doc or "resource_spans" in doc):
        return "otlp-json", decode_otlp_json_rows(doc, names), 0
    fmt, spans, skipped = decode_document(doc, strict=strict)
    return fmt, [span_row(s) for s in spans], skipped


def read_span_rows(
    path: str | Path, *, strict: bool = False, workers: int | None = None
) -> SpanRows:
    """:func:`read_spans` as :data:`~loopscope.analysis.traces.walk.SpanRow` tuples, what
    :func:`~loopscope.analysis.traces.summarize_span_rows` reads: the path of ``loopscope traces FILE``
    (1M spans: about half the time and memory of records).

    A large file in line mode is read in ``workers`` parts at once (default: 2 when the file has at
    least :data:`PARALLEL_MIN_BYTES` and 2 CPUs are usable, else 1): each further part in a forked
    process that sends its rows back pickled; the rows, counts, gaps and line numbers are those of one
    reader from start to end. A part whose process fails is read again here.

    Raises:
        ParseError: unreadable file, or no line/document could be decoded.
        UsageError: OTLP input without opentelemetry-proto installed.
    """
    path = Path(path)
    if workers is None:
        workers = _default_workers(path)
    with gc_paused():
        rows, fmt, documents, gaps = _read(
            path, partial(_decode_rows, strict=strict, names={}), workers=workers
        )
    return SpanRows(rows=rows, format=fmt, documents=documents, gaps=gaps)


PARALLEL_MIN_BYTES = 64 << 20
"""Files smaller than this (64 MiB, ~70k spans) are read by one process: a fork and the pickled rows
cost more than they save."""


def _default_workers(path: Path) -> int:
    """2 for a file of at least :data:`PARALLEL_MIN_BYTES` where processes can fork and 2 CPUs are
    usable, else 1."""
    try:
        size = path.stat().st_size
    except OSError:
        return 1  # the reader states the error
    if size < PARALLEL_MIN_BYTES:
        return 1
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 2 if (cpus or 1) >= 2 else 1


_BUFFER_BYTES = 1 << 20
"""Read buffer: a span file's lines are ~20 KB, longer than the default 8 KB buffer (~10% of a read)."""


@dataclass(slots=True)
class _Part:
    """What one reader of lines ``[start, stop)`` (bytes) found; line numbers count from its start."""

    items: list[Any] = field(default_factory=list)
    formats: set[str] = field(default_factory=set)
    documents: int = 0
    lines: int = 0
    bad: int = 0
    skipped: int = 0
    first_bad: tuple[str, int, str] | None = None
    """(message, line number in the part, the line's first 80 bytes decoded)."""


def _read_part(
    path: Path, start: int, stop: int | None, decode: Callable[[Any], tuple[str, list[Any], int]]
) -> _Part:
    part = _Part()
    items = part.items
    formats = part.formats
    pos = start
    with path.open("rb", buffering=_BUFFER_BYTES) as f:
        if start:
            f.seek(start)
        for line in f:
            if stop is not None and pos >= stop:
                break
            pos += len(line)
            part.lines += 1
            if not line.strip():
                continue
            part.documents += 1
            try:
                fmt, more, n = decode(loads(line))
            except (ValueError, RecursionError) as exc:
                part.bad += 1
                if part.first_bad is None:
                    part.first_bad = (
                        _one_line(exc),
                        part.lines,
                        line[:80].decode("utf-8", "replace"),
                    )
                continue
            formats.add(fmt)
            items.extend(more)
            part.skipped += n
    return part


def _part_in_child(
    conn: Connection,
    path: Path,
    start: int,
    stop: int | None,
    decode: Callable[[Any], tuple[str, list[Any], int]],
) -> None:
    """A forked reader: its part through ``conn``, or None when it failed (the parent then reads the
    part itself and meets the error where it can state it). Ctrl-C is the parent's to handle, and the
    parent's SIGTERM handler (the CLI's) is not inherited: the child, a daemon, ends quietly with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        part: _Part | None = _read_part(path, start, stop, decode)
    except Exception:  # the top of a child process: the parent redoes the part
        part = None
    conn.send(part)
    conn.close()


_FIRST_PART_EXTRA = 0.06
"""The first part, read here, is this much longer than a forked one (a share of the file): a forked
reader also pickles its rows (~7% of its decode time), so both then finish about together."""


def _bounds(path: Path, workers: int) -> list[int]:
    """Byte offsets where parts start: 0, then the start of the line after each cut; the first part
    is ``(1 + _FIRST_PART_EXTRA) / workers`` of the file, the others share the rest evenly."""
    size = path.stat().st_size
    first = size * (1 + _FIRST_PART_EXTRA) / workers
    bounds = [0]
    with path.open("rb") as f:
        for k in range(1, workers):
            f.seek(int(first + (size - first) * (k - 1) / max(1, workers - 1)))
            f.readline()
            at = f.tell()
            if bounds[-1] < at < size:
                bounds.append(at)
    return bounds


def _read_parts(
    path: Path, decode: Callable[[Any], tuple[str, list[Any], int]], workers: int
) -> list[_Part]:
    """The parts of a file in line mode: the first read here, the others in forked processes."""
    bounds = _bounds(path, workers) if workers > 1 else [0]
    stops: list[int | None] = [*bounds[1:], None]
    children = []
    if len(bounds) > 1:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        for start, stop in zip(bounds[1:], stops[1:], strict=True):
            receive, send = ctx.Pipe(duplex=False)
            child = ctx.Process(
                target=_part_in_child, args=(send, path, start, stop, decode), daemon=True
            )
            child.start()
            send.close()
            children.append((child, receive, start, stop))
    parts = [_read_part(path, 0, stops[0], decode)]
    for child, receive, start, stop in children:
        try:
            part = receive.recv()
        except EOFError:  # the child died (killed, out of memory) before sending
            part = None
        receive.close()
        child.join()
        parts.append(part if part is not None else _read_part(path, start, stop, decode))
    return parts


def _read(
    path: Path, decode: Callable[[Any], tuple[str, list[Any], int]], *, workers: int
) -> tuple[list[Any], str, int, tuple[Gap, ...]]:
    """(items, format, documents, gaps) of a file: the line mode or one document (see
    :func:`read_spans`), ``workers`` readers in line mode."""
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
            fmt, items, skipped = decode(doc)
        except (ValueError, RecursionError) as exc:
            raise ParseError(_one_line(exc), path=str(path)) from exc
        return items, fmt, 1, (_skipped_gap(skipped),) if skipped else ()
    parts = _read_parts(path, decode, workers)
    items = parts[0].items
    for part in parts[1:]:
        items.extend(part.items)
        part.items.clear()
    formats: set[str] = set().union(*(p.formats for p in parts))
    documents = sum(p.documents for p in parts)
    bad = sum(p.bad for p in parts)
    skipped = sum(p.skipped for p in parts)
    first_bad: ParseError | None = None
    lines_before = 0
    for part in parts:
        if part.first_bad is not None and first_bad is None:
            message, lineno, text = part.first_bad
            first_bad = ParseError(message, path=str(path), lineno=lines_before + lineno, line=text)
        lines_before += part.lines
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
    return items, fmt, documents, tuple(gaps)


def _skipped_gap(skipped: int) -> Gap:
    return Gap(
        what=f"{skipped} spans",
        reason="malformed (missing or non-hex ids, non-numeric times), skipped",
        count=skipped,
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
