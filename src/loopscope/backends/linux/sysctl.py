"""The sysctls and kernel counters the doctor judges beyond :class:`~loopscope.model.StackFacts`.

Read through :func:`loopscope.backends.linux.procfs.read_sysctl` (the one sysctl reader) from a
:class:`~loopscope.backends.linux.procfs.ProcRoot`. /proc/sys/net shows the network namespace of the
*reading thread*; so does /proc/thread-self/net (while /proc/net follows the thread-group leader), so
call :func:`read_sysctls` inside :func:`~loopscope.backends.linux.netns.run_in_netns` for another
namespace. Sources of truth: Documentation/networking/ip-sysctl.rst, net/ipv4/route.c
``rt_cpu_seq_show`` (/proc/net/stat/rt_cache).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from loopscope.backends.linux.procfs import ProcRoot, read_sysctl
from loopscope.errors import ParseError
from loopscope.model.sysctls import Sysctls

__all__ = ["parse_rt_cache", "read_sysctls"]


def _flag(value: str | None) -> bool | None:
    return None if value is None else value == "1"


def _count(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def parse_rt_cache(text: str) -> tuple[int | None, int | None]:
    """Martian packet counters of /proc/net/stat/rt_cache, summed over every CPU line.

    The file has a header line of column names, then one line of hex counters per CPU.

    Example: a header with ``... in_martian_dst in_martian_src ...`` and the two CPU lines
    ``... 00000002 00000001 ...`` and ``... 00000000 0000000a ...`` -> ``(11, 2)``
    as ``(martian_src, martian_dst)``; ``(None, None)`` when the columns are absent.

    Raises:
        ParseError: a CPU line without those columns, or a counter that is not hex.
    """
    lines = text.strip().splitlines()
    if not lines:
        return None, None
    header = lines[0].split()
    if "in_martian_src" not in header or "in_martian_dst" not in header:
        return None, None
    i_src, i_dst = header.index("in_martian_src"), header.index("in_martian_dst")
    rows = [line.split() for line in lines[1:]]
    try:
        return sum(int(r[i_src], 16) for r in rows), sum(int(r[i_dst], 16) for r in rows)
    except (IndexError, ValueError) as exc:
        raise ParseError(f"bad rt_cache line: {exc}", path="/proc/net/stat/rt_cache") from exc


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def read_sysctls(interfaces: Iterable[str], root: ProcRoot = ProcRoot()) -> Sysctls:
    """route_localnet of ``all``, ``default`` and each interface, the IPv6 module, ICMP echo ignore,
    conntrack fill, martian counters.

    Args:
        interfaces: interface names to read ``net.ipv4.conf.<name>.route_localnet`` for.
        root: where /proc is.

    Returns:
        A :class:`~loopscope.model.sysctls.Sysctls`; what cannot be read is None (conntrack not loaded,
        an interface gone) or left out of ``route_localnet``.
    """
    localnet: dict[str, bool] = {}
    for name in ("all", "default", *interfaces):
        value = read_sysctl(root, f"net.ipv4.conf.{name.replace('.', '/')}.route_localnet")
        if value is not None:
            localnet[name] = value == "1"
    stat = _read_text(root.join("thread-self", "net", "stat", "rt_cache"))
    martian_src, martian_dst = parse_rt_cache(stat) if stat else (None, None)
    return Sysctls(
        route_localnet=localnet,
        ipv6_module=os.path.isdir(root.join("sys", "net", "ipv6")),
        martian_src=martian_src,
        martian_dst=martian_dst,
        icmp_echo_ignore_v4=_flag(read_sysctl(root, "net.ipv4.icmp_echo_ignore_all")),
        icmp_echo_ignore_v6=_flag(read_sysctl(root, "net.ipv6.icmp.echo_ignore_all")),
        conntrack_count=_count(read_sysctl(root, "net.netfilter.nf_conntrack_count")),
        conntrack_max=_count(read_sysctl(root, "net.netfilter.nf_conntrack_max")),
    )
