"""The ring buffer reader on a memfd laid out like a BPF_MAP_TYPE_RINGBUF mapping (consumer page,
producer page, data twice): committed, busy, discarded and wrapping records."""

from __future__ import annotations

import mmap
import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopscope.backends.linux.bpf.program import EVENT
from loopscope.backends.linux.bpf.sockops import parse_event
from loopscope.backends.linux.bpf.syscall import RINGBUF_BUSY_BIT, RINGBUF_DISCARD_BIT, RingBuffer
from loopscope.errors import LoopscopeError

PAGE = mmap.PAGESIZE
SIZE = PAGE  # one data page, so wrapping is easy to reach


def _ring(records: list[tuple[int, bytes]], start: int = 0) -> tuple[int, int]:
    """A memfd holding the ring: ``records`` of (header flags, payload) from position ``start``."""
    data = bytearray(SIZE)
    pos = start
    for flags, payload in records:
        hdr = struct.pack("=II", len(payload) | flags, 0)
        blob = hdr + payload + b"\0" * (-(len(payload)) % 8)
        for k, byte in enumerate(blob):
            data[(pos + k) % SIZE] = byte
        pos += len(blob)
    fd = os.memfd_create("ring")
    os.write(fd, struct.pack("=Q", start).ljust(PAGE, b"\0"))  # consumer page
    os.write(fd, struct.pack("=Q", pos).ljust(PAGE, b"\0"))  # producer page
    os.write(fd, bytes(data) * 2)  # the data pages, mapped twice by the kernel
    return fd, pos


def _read(ring: RingBuffer) -> list[bytes]:
    return [bytes(ring.view[off : off + n]) for off, n in ring.records()]


def test_committed_records_in_order_and_consumer_advances() -> None:
    fd, end = _ring([(0, b"first"), (0, b"second!!"), (0, b"x" * 13)])
    ring = RingBuffer(fd, SIZE)
    assert _read(ring) == [b"first", b"second!!", b"x" * 13]
    assert ring.pending_bytes() == 0
    assert struct.unpack("=Q", os.pread(fd, 8, 0))[0] == end  # consumer position written back
    assert _read(ring) == []
    ring.close()
    ring.close()
    os.close(fd)


def test_a_record_is_consumed_only_once_the_caller_moves_past_it() -> None:
    fd, _ = _ring([(0, b"one"), (0, b"two"), (0, b"three")])
    ring = RingBuffer(fd, SIZE)
    for _off, n in ring.records():
        if n == 3 and bytes(ring.view[_off : _off + 3]) == b"two":
            break  # stop before taking "two"
    assert _read(ring) == [b"two", b"three"]  # "one" was consumed, "two" was not
    ring.close()
    os.close(fd)


def test_stops_at_a_busy_record_and_skips_discarded_ones() -> None:
    fd, _ = _ring(
        [
            (RINGBUF_DISCARD_BIT, b"dropped"),
            (0, b"kept"),
            (RINGBUF_BUSY_BIT, b"inprogress"),
            (0, b"later"),
        ]
    )
    ring = RingBuffer(fd, SIZE)
    assert _read(ring) == [b"kept"]
    assert ring.pending_bytes() == 8 + 16 + 8 + 8  # the busy record and the one after it wait
    ring.close()
    os.close(fd)


def test_a_record_that_wraps_reads_contiguously() -> None:
    start = SIZE - 16  # the second record's payload crosses the end of the data area
    fd, end = _ring([(0, b"12345678"), (0, b"wrapped-around-payload")], start=start)
    ring = RingBuffer(fd, SIZE)
    assert _read(ring) == [b"12345678", b"wrapped-around-payload"]
    assert struct.unpack("=Q", os.pread(fd, 8, 0))[0] == end
    ring.close()
    os.close(fd)


def test_bad_descriptor_is_a_backend_error() -> None:
    from loopscope.errors import BackendUnavailable

    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)  # a directory cannot be mapped
    try:
        with pytest.raises(BackendUnavailable):
            RingBuffer(fd, SIZE)
    finally:
        os.close(fd)


@given(
    st.one_of(
        st.binary(max_size=100),
        st.builds(
            lambda head, family, tail: (head + struct.pack("=II", 3, family) + tail)[: EVENT.size],
            st.binary(min_size=24, max_size=24),
            st.sampled_from([2, 10, 0, 1, 0xFFFFFFFF]),
            st.binary(min_size=EVENT.size - 32, max_size=EVENT.size - 32),
        ),
    ),
    st.integers(-(2**62), 2**62),
)
def test_fuzz_parse_event(data: bytes, mono_to_real_ns: int) -> None:
    try:
        parse_event(data, mono_to_real_ns=mono_to_real_ns)
    except LoopscopeError:
        pass
