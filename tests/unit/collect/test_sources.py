"""parse_sockstat_time_wait on /proc/net/sockstat text (golden value and hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loopscope.collect.sources import parse_sockstat_time_wait

SOCKSTAT = """sockets: used 1200
TCP: inuse 41 orphan 0 tw 1776 alloc 70 mem 12
UDP: inuse 3 mem 2
"""


def test_time_wait_total_from_sockstat():
    assert parse_sockstat_time_wait(SOCKSTAT) == 1776
    assert parse_sockstat_time_wait("sockets: used 1\n") is None


@given(
    st.one_of(
        st.text(max_size=200),
        st.lists(
            st.sampled_from(["TCP:", "tw", "inuse", "1", "-3", "x", "99999999999999999999", "\n"]),
            max_size=12,
        ).map(" ".join),
    )
)
def test_fuzz_sockstat(text: str) -> None:
    value = parse_sockstat_time_wait(text)
    assert value is None or isinstance(value, int)
