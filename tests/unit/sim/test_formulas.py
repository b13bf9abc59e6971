"""Erlang B/C and M/M/c closed forms against textbook values (pure)."""

import math

import pytest

from loopscope.sim.formulas import erlang_b, erlang_c, fanout_slow_fraction, mmc, mmc_wait_tail


def _erlang_c_direct(c: int, a: float) -> float:
    """Textbook sum form (Kleinrock eq. 3.40), independent of the recursion under test."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def test_erlang_b_known_values():
    assert erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang_b(3, 2.0) == pytest.approx(4 / 19)
    # Erlang B table: 10 trunks, 5 Erlangs -> 1.84% blocking
    assert erlang_b(10, 5.0) == pytest.approx(0.01838, abs=1e-5)


def test_erlang_c_mm1_is_rho():
    for rho in (0.1, 0.5, 0.9):
        assert erlang_c(1, rho) == pytest.approx(rho)


@pytest.mark.parametrize("rho", [0.2, 0.5, 0.8, 0.95])
def test_erlang_c_mm2_closed_form(rho):
    assert erlang_c(2, 2 * rho) == pytest.approx(2 * rho**2 / (1 + rho))


def test_erlang_c_textbook_examples():
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9)
    # call-centre example: 10 Erlangs offered to 11 agents -> P(wait) = 0.6821
    assert erlang_c(11, 10.0) == pytest.approx(0.6821, abs=5e-4)


@pytest.mark.parametrize(("c", "a"), [(4, 2.8), (8, 6.0), (16, 15.0), (50, 45.5), (100, 70.0)])
def test_erlang_c_matches_sum_form(c, a):
    assert erlang_c(c, a) == pytest.approx(_erlang_c_direct(c, a), rel=1e-9)


def test_erlang_c_rejects_unstable():
    with pytest.raises(ValueError):
        erlang_c(4, 4.0)
    with pytest.raises(ValueError):
        erlang_b(0, 1.0)


def test_mmc_mm2():
    r = mmc(1.0, 1.0, 2)
    assert r.wait_prob == pytest.approx(1 / 3)
    assert r.mean_wait_s == pytest.approx(1 / 3)  # C / (c mu - lambda) = (1/3) / 1
    assert r.mean_response_s == pytest.approx(4 / 3)
    assert r.mean_queue_len == pytest.approx(1 / 3)
    assert r.utilisation_pct == pytest.approx(50.0)


def test_mmc_wait_tail():
    assert mmc_wait_tail(1.0, 1.0, 2, 0.0) == pytest.approx(1 / 3)
    assert mmc_wait_tail(1.0, 1.0, 2, 1.0) == pytest.approx(math.exp(-1) / 3)


def test_fanout_slow_fraction_dean_barroso():
    assert fanout_slow_fraction(100, 0.01) == pytest.approx(0.634, abs=1e-3)
    assert fanout_slow_fraction(1, 0.01) == pytest.approx(0.01)
    assert fanout_slow_fraction(0, 0.5) == 0.0
