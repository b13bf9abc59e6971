"""The one sysctl reader (procfs.read_sysctl) and the doctor's sysctls (sysctl.read_sysctls), on a
recorded-style /proc tree and on the real /proc of this namespace."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from loopscope.backends.linux.procfs import ProcRoot, read_stack_facts, read_sysctl
from loopscope.backends.linux.sysctl import parse_rt_cache, read_sysctls
from loopscope.errors import ParseError

RT_CACHE = (
    "entries  in_hit   in_slow_tot in_slow_mc in_no_route in_brd   in_martian_dst in_martian_src\n"
    "00000005 00000000 00000008    00000000   00000000    00000000 00000002       00000001\n"
    "00000005 00000000 00000009    00000000   00000000    00000000 00000000       0000000a\n"
)


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def proc(tmp_path: Path) -> ProcRoot:
    _write(tmp_path, "sys/net/ipv4/conf/all/route_localnet", "0\n")
    _write(tmp_path, "sys/net/ipv4/conf/default/route_localnet", "0\n")
    _write(tmp_path, "sys/net/ipv4/conf/lo/route_localnet", "1\n")
    _write(tmp_path, "sys/net/ipv4/conf/eth0.100/route_localnet", "1\n")
    _write(tmp_path, "sys/net/ipv4/icmp_echo_ignore_all", "1\n")
    _write(tmp_path, "sys/net/ipv4/ping_group_range", "0\t2147483647\n")
    _write(tmp_path, "sys/net/netfilter/nf_conntrack_count", "12\n")
    _write(tmp_path, "sys/net/netfilter/nf_conntrack_max", "262144\n")
    _write(tmp_path, "thread-self/net/stat/rt_cache", RT_CACHE)
    return ProcRoot(str(tmp_path))


def test_read_sysctl_dotted_names_and_interface_dots(proc: ProcRoot) -> None:
    assert read_sysctl(proc, "net.ipv4.conf.lo.route_localnet") == "1"
    assert read_sysctl(proc, "net.ipv4.conf.eth0/100.route_localnet") == "1"  # sysctl(8) form
    assert read_sysctl(proc, "net.ipv4.no_such_knob") is None


def test_parse_rt_cache_sums_cpus() -> None:
    assert parse_rt_cache(RT_CACHE) == (11, 2)
    assert parse_rt_cache("entries in_hit\n00000001 00000002\n") == (None, None)
    assert parse_rt_cache("") == (None, None)


def test_read_sysctls_from_a_tree(proc: ProcRoot) -> None:
    got = read_sysctls(["lo", "eth0.100", "gone0"], proc)
    assert got.route_localnet == {"all": False, "default": False, "lo": True, "eth0.100": True}
    assert got.ipv6_module is False  # no sys/net/ipv6 in the tree: ipv6.disable=1
    assert (got.martian_src, got.martian_dst) == (11, 2)
    assert got.icmp_echo_ignore_v4 is True and got.icmp_echo_ignore_v6 is None
    assert (got.conntrack_count, got.conntrack_max) == (12, 262144)


def test_stack_facts_and_doctor_sysctls_share_the_reader(proc: ProcRoot) -> None:
    stack = read_stack_facts(proc)
    assert stack.ping_group_range == (0, 2147483647)
    assert stack.route_localnet_all is False
    assert stack.somaxconn is None  # absent from the tree


@pytest.mark.linux
def test_read_sysctls_matches_real_proc() -> None:
    got = read_sysctls(["lo"])
    with open("/proc/sys/net/ipv4/conf/lo/route_localnet") as fh:
        assert got.route_localnet["lo"] is (fh.read().strip() == "1")
    assert got.ipv6_module == Path("/proc/sys/net/ipv6").is_dir()
    with open("/proc/thread-self/net/stat/rt_cache") as fh:
        assert (got.martian_src, got.martian_dst) == parse_rt_cache(fh.read())


_RT_CACHE = st.one_of(
    st.text(max_size=120),
    st.builds(
        lambda cols, rows: "\n".join([" ".join(cols), *(" ".join(r) for r in rows)]),
        st.permutations(["entries", "in_hit", "in_martian_dst", "in_martian_src", "out_hit"]),
        st.lists(
            st.lists(st.sampled_from(["00000002", "0000000a", "zz", "-1", ""]), max_size=6),
            max_size=3,
        ),
    ),
)


@given(_RT_CACHE)
@example("in_martian_src in_martian_dst\n00000001")  # found by this test: IndexError (short row)
@example("in_martian_src in_martian_dst\nzz 00")  # ValueError (not hex)
def test_fuzz_parse_rt_cache(text: str) -> None:
    try:
        parse_rt_cache(text)
    except ParseError:
        pass
