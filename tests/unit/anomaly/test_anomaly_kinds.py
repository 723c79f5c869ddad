"""Metric kinds: the scored space, the σ floors, and the exact binomial and Poisson tails against plain-sum oracles."""

from __future__ import annotations

import math
from fractions import Fraction
from statistics import NormalDist

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.anomaly.kinds import (
    KIND_OF,
    LATENCY_SPREAD,
    Kind,
    base_floor,
    binomial_z,
    decode,
    encode,
    floor_sigma,
    poisson_low_z,
    value_sigma,
)
from schemas.anomaly import MetricName


def _tail_oracle(k: int, n: int, p: float) -> float:
    """P(X ≥ k), X ~ Binomial(n, p), in exact rational arithmetic."""
    q = Fraction(p)
    return float(sum(math.comb(n, j) * q**j * (1 - q) ** (n - j) for j in range(k, n + 1)))


def test_every_metric_has_a_kind() -> None:
    """No metric falls back to the model-free level by accident."""
    assert set(KIND_OF) == set(MetricName)
    assert KIND_OF[MetricName.ERROR_RATE] is Kind.PROPORTION
    assert KIND_OF[MetricName.REVENUE] is Kind.MONEY
    assert KIND_OF[MetricName.REQUEST_VOLUME] is Kind.COUNT


@given(st.sampled_from(list(Kind)), st.floats(0, 1e12))
def test_encode_decode_round_trip_on_non_negative_values(kind: Kind, value: float) -> None:
    """Every kind maps a valid value back to itself (proportions live in [0, 1])."""
    if kind is Kind.PROPORTION:
        value = min(value, 1.0)
    assert decode(kind, encode(kind, value)) == pytest.approx(value, rel=1e-9, abs=1e-9)


@given(st.sampled_from(list(Kind)), st.floats(-1e6, 1e6), st.floats(0, 1e6), st.one_of(st.none(), st.floats(0, 1e6)))
def test_floor_never_lowers_sigma_and_is_positive(kind: Kind, expected: float, sigma: float, n: float | None) -> None:
    """The floor only ever raises σ, and σ is never 0 (so no score is ever capped)."""
    floored = floor_sigma(kind, expected, sigma, n)
    assert floored >= sigma
    assert floored > 0


def test_count_floor_is_poisson() -> None:
    """A count at μ = 0 has σ ≥ 1; at μ = 400, σ ≥ 20."""
    assert floor_sigma(Kind.COUNT, 0.0, 0.0) == 1.0
    assert floor_sigma(Kind.COUNT, 399.0, 0.0) == pytest.approx(20.0)
    assert base_floor(Kind.COUNT) == 1.0


def test_proportion_floor_shrinks_with_the_denominator() -> None:
    """More requests, less binomial noise: σ(n = 10,000) is a tenth of σ(n = 100) near the same rate."""
    small = floor_sigma(Kind.PROPORTION, 0.01, 0.0, 100.0)
    large = floor_sigma(Kind.PROPORTION, 0.01, 0.0, 10_000.0)
    assert large < small / 8


def test_money_drop_to_zero_in_sqrt_space() -> None:
    """√ space: a drop to 0 from a level of 10,000 is 100 units of √, and the band edge decodes to ≥ 0."""
    assert encode(Kind.MONEY, 10_000.0) == 100.0
    assert encode(Kind.MONEY, -50.0) == 0.0  # refunds above charges: nothing earned
    assert decode(Kind.MONEY, -3.0) == 0.0
    assert value_sigma(Kind.MONEY, 100.0, 10.0) == pytest.approx((110**2 - 90**2) / 2)


@given(st.integers(1, 200), st.data(), st.floats(1e-4, 0.5))
def test_binomial_z_matches_the_exact_tail(n: int, data: st.DataObject, p: float) -> None:
    """binomial_z is the normal quantile of the exact upper tail (oracle: exact rational sum).

    The rate is taken as at least one event a day at n per hour, as documented.
    """
    k = data.draw(st.integers(0, n))
    z = binomial_z(k / n, p, n)
    p = max(p, 1 / (24 * n))
    if k <= p * n:
        assert z is None
        return
    assert z is not None
    tail = max(_tail_oracle(k, n, p), 1e-300)
    assert z == pytest.approx(-NormalDist().inv_cdf(min(tail, 0.5)), rel=1e-6, abs=1e-6)


def test_binomial_z_regressions() -> None:
    """3 failures in 7 where 1 in 200 fail is ~4.3σ, not 3.4σ; one in 80 where none fail is < 2σ."""
    z = binomial_z(3 / 7, 0.0046, 7)
    assert z is not None
    assert z == pytest.approx(4.34, abs=0.01)
    one = binomial_z(1 / 80, 0.0, 80)
    assert one is not None
    assert one < 2
    assert binomial_z(0.5, 0.01, 10_000) is None  # large n: the normal approximation is used


def test_proportion_without_its_denominator_gets_no_binomial_floor() -> None:
    """Regression: an unknown n was taken as 1, so σ of a 2 % rate became 0.47 and nothing was ever out of band."""
    assert floor_sigma(Kind.PROPORTION, 0.02, 0.003, None) == 0.003


def test_latency_floor_is_the_spread_of_a_p95_of_few_requests() -> None:
    """A p95 of 4 requests is known to LATENCY_SPREAD/2 in log space; of 10,000, the 5 % floor rules."""
    assert floor_sigma(Kind.LATENCY, math.log1p(100.0), 0.0, 4.0) == pytest.approx(LATENCY_SPREAD / 2)
    assert floor_sigma(Kind.LATENCY, math.log1p(100.0), 0.0, 10_000.0) == pytest.approx(0.05)
    assert floor_sigma(Kind.LATENCY, math.log1p(100.0), 0.0, None) == pytest.approx(0.05)  # unknown n: no model


def test_decline_floor_is_the_poisson_noise_of_the_ratio() -> None:
    """3 users a week ago, 2 now: a 33 % "decline" is well under 1σ; among 10,000 users the 5-point floor rules."""
    few = floor_sigma(Kind.CHANGE, 0.0, 0.0, 3.0)
    assert few > 1 / 3
    assert floor_sigma(Kind.CHANGE, 0.0, 0.0, 10_000.0) == pytest.approx(0.05)


def _poisson_oracle(k: int, lam: float) -> float:
    """P(N ≤ k), N ~ Poisson(lam): e^-λ times Σ λ^j / j!, the sum in exact rational arithmetic."""
    q = Fraction(lam)
    return math.exp(-lam) * float(sum(q**j / math.factorial(j) for j in range(k + 1)))


@given(st.floats(0.05, 200.0), st.data())
def test_poisson_low_z_matches_the_exact_tail(lam: float, data: st.DataObject) -> None:
    """poisson_low_z is the normal quantile of the exact lower tail; None unless k is below λ."""
    k = data.draw(st.integers(0, math.ceil(lam) + 3))
    z = poisson_low_z(k, lam)
    if k >= lam:
        assert z is None
        return
    assert z is not None
    tail = max(_poisson_oracle(k, lam), 1e-300)
    assert z == pytest.approx(NormalDist().inv_cdf(min(tail, 0.5)), rel=1e-6, abs=1e-6)


def test_poisson_low_z_regressions() -> None:
    """No charge where 2.28 are usual happens one window in ten (−1.27σ, not the √ model's −2σ);
    none in three such windows once in a thousand (−3.07σ); out-of-range rates give None."""
    one = poisson_low_z(0, 2.28)
    assert one == pytest.approx(-1.27, abs=0.01)
    three = poisson_low_z(0, 3 * 2.28)
    assert three == pytest.approx(-3.07, abs=0.01)
    assert poisson_low_z(0, 0.0) is None
    assert poisson_low_z(5, 1e6) is None  # so many expected: the normal approximation serves
