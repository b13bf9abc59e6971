"""Record netlink replies and /proc subtrees as fixtures, and load them back.

Run ``python -m loopscope.testing.record OUTDIR`` to record this host's sock_diag and rtnl replies
(``sock_diag.json``, ``rtnl.json``) and a /proc tree of the socket-owning processes (``proc/``).
Replay with :func:`load_transport` (a :class:`~loopscope.backends.linux.netlink.ReplayTransport`) and
``ProcRoot(OUTDIR + "/proc")``.

Every fixture recorder of the test suite (this one through ``tests/fixtures/make_host1.py``) is listed
and run by one command: ``python tests/record_fixtures.py --list | NAME... | all`` (docs/development.md).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path

from loopscope.backends.linux import rtnl, sock_diag
from loopscope.backends.linux.netlink import KernelTransport, RecordingTransport, ReplayTransport
from loopscope.backends.linux.netns import current_netns
from loopscope.backends.linux.procfs import ProcRoot, scan_socket_owners

__all__ = [
    "load_transport",
    "main",
    "record_proc_tree",
    "record_rtnl",
    "record_sock_diag",
    "save_datagrams",
]


def save_datagrams(path: str | Path, datagrams: list[bytes], **meta: object) -> None:
    """Write datagrams as hex in a JSON file with metadata."""
    Path(path).write_text(json.dumps({**meta, "datagrams": [d.hex() for d in datagrams]}, indent=1))


def load_transport(path: str | Path) -> ReplayTransport:
    """A ReplayTransport over a file written by :func:`save_datagrams`."""
    doc = json.loads(Path(path).read_text())
    return ReplayTransport([bytes.fromhex(h) for h in doc["datagrams"]])


def record_sock_diag(path: str | Path, *, tcp_info: bool = True) -> int:
    """Record a full TCP+UDP v4+v6 dump; returns the number of sockets."""
    rec = RecordingTransport(KernelTransport(sock_diag.NETLINK_SOCK_DIAG))
    try:
        count = sum(
            1 for _ in sock_diag.dump_sockets(rec, netns=current_netns(), tcp_info=tcp_info)
        )
    finally:
        rec.close()
    save_datagrams(
        path,
        rec.received,
        kind="sock_diag",
        tcp_info=tcp_info,
        sockets=count,
        kernel=os.uname().release,
    )
    return count


def record_rtnl(path: str | Path) -> int:
    """Record an RTM_GETLINK + RTM_GETADDR pair of dumps; returns the number of addresses."""
    rec = RecordingTransport(KernelTransport(rtnl.NETLINK_ROUTE))
    try:
        links = rtnl.dump_links(rec)
        count = len(rtnl.dump_addresses(rec, {link.index: link.name for link in links}))
    finally:
        rec.close()
    save_datagrams(path, rec.received, kind="rtnl", addresses=count)
    return count


def record_proc_tree(dest: str | Path, pids: list[int] | None = None) -> int:
    """Copy stat, status, cmdline, cgroup and the fd symlinks of processes into ``dest``.

    Args:
        dest: target folder (a ``proc`` root).
        pids: processes to copy; default: every process holding a socket.

    Returns:
        Number of processes recorded.
    """
    root = Path(dest)
    if pids is None:
        pids = sorted({k.pid for keys in scan_socket_owners().owners.values() for k in keys})
    done = 0
    for pid in pids:
        src = ProcRoot().join(str(pid))
        target = root / str(pid)
        try:
            (target / "fd").mkdir(parents=True, exist_ok=True)
            for name in ("stat", "status", "cmdline", "cgroup"):
                shutil.copyfile(os.path.join(src, name), target / name)
            for fd in os.listdir(os.path.join(src, "fd")):
                try:
                    link = os.readlink(os.path.join(src, "fd", fd))
                except OSError:
                    continue  # closed since listdir (listdir's own fd is one)
                if link.startswith("socket:["):
                    os.symlink(link, target / "fd" / fd)
        except OSError:
            shutil.rmtree(target, ignore_errors=True)
            continue
        done += 1
    return done


def main(argv: list[str] | None = None) -> int:
    """``python -m loopscope.testing.record OUTDIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m loopscope.testing.record OUTDIR\n")
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    n = record_sock_diag(out / "sock_diag.json")
    a = record_rtnl(out / "rtnl.json")
    p = record_proc_tree(out / "proc")
    (out / "proc" / "net").mkdir(parents=True, exist_ok=True)
    for table in ("tcp", "tcp6", "udp", "udp6"):
        shutil.copyfile(f"/proc/net/{table}", out / "proc" / "net" / table)
    sys.stdout.write(
        f"recorded {n} sockets, {a} addresses, {p} processes in {out} ({socket.gethostname()})\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
