import os
from pathlib import Path

import pytest

from loopscope.backends.linux.fdscan import decode_scan
from loopscope.backends.linux.fdtables import encode_tables, scan_fd_tables
from loopscope.errors import ParseError
from loopscope.model import NetnsId, ProcessKey


def _stat_line(pid: int, comm: str, start_ticks: int) -> str:
    # fields 3..21 then starttime (field 22)
    return f"{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 " + "0 " * 12 + f"{start_ticks} 0 0\n"


def _process(proc: Path, pid: int, comm: str, ticks: int, fds: dict[str, str], ns: str) -> None:
    d = proc / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "ns").mkdir()
    (d / "stat").write_text(_stat_line(pid, comm, ticks))
    (proc / ns).touch(exist_ok=True)
    (d / "ns" / "net").symlink_to(proc / ns)  # stat() follows it: same (dev, ino) per namespace
    for fd, target in fds.items():
        (d / "fd" / fd).symlink_to(target)


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A recorded /proc: two processes share socket 555 (one with a hostile comm), one holds no
    socket, one lost its fd table (exited), and a non-pid entry."""
    root = tmp_path / "proc"
    root.mkdir()
    _process(root, 200, "b", 2000, {"5": "socket:[555]", "6": "socket:[777]"}, "ns-a")
    _process(root, 100, "a) (x", 1000, {"3": "socket:[555]", "4": "/dev/null"}, "ns-a")
    _process(root, 300, "c", 3000, {"0": "/dev/null"}, "ns-b")
    _process(root, 400, "d", 4000, {"7": "socket:[999]"}, "ns-b")
    (root / "500").mkdir()  # no fd directory: the process exited mid-scan
    (root / "sys").mkdir()
    return root


def test_owners_keys_and_namespaces_of_a_recorded_tree(proc: Path):
    owners, keys, pid_netns, denied, vanished = scan_fd_tables(str(proc))
    assert owners == {555: [(100, 1000), (200, 2000)], 777: [(200, 2000)], 999: [(400, 4000)]}
    assert keys == {100: (100, 1000), 200: (200, 2000), 400: (400, 4000)}
    ns_a, ns_b = (os.stat(proc / n) for n in ("ns-a", "ns-b"))
    assert pid_netns[(ns_a.st_dev, ns_a.st_ino)] in (100, 200)
    assert pid_netns[(ns_b.st_dev, ns_b.st_ino)] == 400  # 300 holds no socket: not listed
    assert (denied, vanished) == (0, 1)


def test_model_types_want_skip_and_netns_filter(proc: Path):
    owners, keys, pid_netns, _, _ = scan_fd_tables(
        str(proc), want={555}, skip_pid=200, make_key=ProcessKey, make_ns=NetnsId
    )
    assert owners == {555: [ProcessKey(100, 1000)]}
    assert isinstance(keys[100], ProcessKey) and all(isinstance(n, NetnsId) for n in pid_netns)
    st = os.stat(proc / "ns-b")
    owners, _, _, _, vanished = scan_fd_tables(str(proc), netns={NetnsId(st.st_dev, st.st_ino)})
    assert owners == {999: [(400, 4000)]} and vanished == 1  # 500 has no ns/net either


def test_encoded_tables_decode_to_the_same_scan(proc: Path):
    owners, keys, pid_netns, denied, vanished = scan_fd_tables(str(proc))
    scan = decode_scan(encode_tables(owners, pid_netns, denied, vanished))
    assert scan.owners == {i: tuple(ks) for i, ks in owners.items()}
    assert scan.keys == keys and scan.pid_netns == pid_netns
    assert (scan.denied_pids, scan.vanished_pids) == (0, 1)


def test_an_unlistable_root_is_a_parse_error(tmp_path: Path):
    with pytest.raises(ParseError, match="cannot list"):
        scan_fd_tables(str(tmp_path / "missing"))
