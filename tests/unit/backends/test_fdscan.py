import os
import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from loopscope.backends.linux.fdscan import (
    collect_forked,
    decode_scan,
    encode_scan,
    start_owner_scan,
)
from loopscope.backends.linux.fdtables import fork_scan
from loopscope.backends.linux.procfs import OwnerScan, ProcRoot, scan_socket_owners
from loopscope.errors import ParseError
from loopscope.model import NetnsId, ProcessKey


def test_roundtrip_keeps_every_owner_in_order():
    a, b = ProcessKey(10, 100), ProcessKey(11, 110)
    scan = OwnerScan(
        owners={7: (a, b), 9: (b,)},
        keys={10: a, 11: b},
        pid_netns={NetnsId(4, 99): 10},
        denied_pids=2,
        vanished_pids=1,
    )
    out = decode_scan(encode_scan(scan))
    assert out == scan and isinstance(out.owners[7][0], ProcessKey)
    assert out.pid_netns == {NetnsId(4, 99): 10} and (out.denied_pids, out.vanished_pids) == (2, 1)


def test_decode_rejects_wrong_length():
    with pytest.raises(ParseError):
        decode_scan(struct.pack("=qqqqq", 0, 0, 5, 0, 0))
    with pytest.raises(ParseError):
        decode_scan(b"\0" * 8)


@pytest.fixture
def mine() -> Iterator[int]:
    """The inode of a listener this process holds (bound to 127.0.0.1:0) for the test's length."""
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield os.fstat(listener.fileno()).st_ino
    finally:
        listener.close()


@pytest.mark.linux
def test_forked_scan_equals_in_process_scan_and_leaves_out_the_child(mine: int):
    forked = start_owner_scan().result()
    here = scan_socket_owners()
    assert [k.pid for k in forked.owners[mine]] == [os.getpid()]  # not the scanning child
    assert forked.owners[mine] == here.owners[mine]
    threaded = start_owner_scan(fork=False).result()
    assert threaded.owners[mine] == here.owners[mine] and threaded.keys[os.getpid()]


@pytest.mark.linux
def test_a_scan_forked_early_is_collected_later_with_the_same_owners(mine: int):
    forked = fork_scan()  # what `ports --json` does before its imports
    assert forked is not None
    child, fd = forked
    scan = collect_forked(child, fd)
    assert [k.pid for k in scan.owners[mine]] == [os.getpid()]
    assert isinstance(scan.owners[mine][0], ProcessKey)
    assert scan.owners[mine] == scan_socket_owners().owners[mine]
    assert child not in scan.keys  # the child left itself out
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)  # reaped
    with pytest.raises(OSError):
        os.fstat(fd)  # the pipe is closed


@pytest.mark.linux
def test_a_failed_forked_scan_is_made_again_here(tmp_path):
    missing = str(tmp_path / "no-proc")
    forked = fork_scan(missing)  # the child cannot list it: exit 1, nothing written
    assert forked is not None
    with pytest.raises(ParseError, match="cannot list"):
        collect_forked(*forked, root=ProcRoot(missing))  # raised by the scan made here


@pytest.mark.linux
def test_netns_filter_reads_only_processes_of_those_namespaces(mine: int):
    st_ns = os.stat("/proc/self/ns/net")
    here = NetnsId(st_ns.st_dev, st_ns.st_ino)
    assert mine in scan_socket_owners(netns={here}).owners
    assert start_owner_scan(netns={here}).result().owners[mine][0].pid == os.getpid()
    assert scan_socket_owners(netns={NetnsId(0, 1)}).owners == {}


@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda counts, words: (
                struct.pack("=5q", 0, 0, *counts) + struct.pack(f"={len(words)}q", *words)
            ),
            st.tuples(st.integers(-2, 3), st.integers(-2, 3), st.integers(-2, 2)),
            st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20),
        ),
    )
)
@example(bytes(41))  # a header and one odd byte: array.frombytes raised ValueError
def test_fuzz_decode_scan(data: bytes) -> None:
    try:
        decode_scan(data)
    except ParseError:
        pass
