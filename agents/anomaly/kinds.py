"""What kind of number a metric is, and what that says about its noise (pure).

A baseline's robust σ measures how a stream has moved; it knows nothing of what the
numbers are. For most metrics that is fine while the stream is busy, and wrong at the edges:

- a **count** (requests, error events, cancellations) has at least Poisson noise, √μ: an
  hour with one error where none is usual is not thousands of σ out;
- a **proportion** (error rate, 4xx ratio, top-IP share) of n requests has at least binomial
  noise, √(p̃(1 − p̃)/n) with p̃ the Laplace-smoothed rate (p·n + 1)/(n + 2) (the centre of
  a Wilson interval at one σ): one error in 80 requests is about one σ, not 4,000;
- **money** (revenue: a random number of charges of random amounts, a compound Poisson sum)
  is scored as √value, its variance-stabilising transform: σ there no longer grows with the
  level, a drop to 0 stands out by about 2√(charges per window) σ (far out for a busy tenant,
  honestly less for one with two charges a window), and the band's lower edge stays ≥ 0;
  a window whose refunds exceed its charges counts as 0. The √ transform stabilises the
  variance of *many* charges; with few, its normal tail overstates a quiet window (no charge
  where 2.3 are usual happens one window in ten, not one in fifty as −2.1σ says). So when a
  window carries its charge count (the point's denominator) and that count is below the
  usual one, the window is scored no further out than the exact Poisson tail of so few
  charges (`poisson_low_z`); the detector pools those counts over a run of windows too;
  When that binomial floor is what bounds σ and the rate is above its usual level, the
  normal approximation understates rare events (3 failures in 7 requests where 1 in 200
  fail is rarer than one in 100,000, not 3.4σ): the point is scored by the exact binomial
  tail instead (`binomial_z`), for up to `EXACT_MAX_N` requests;
- a non-negative **amount** (storage, active users) moves in proportion to its size and
  cannot go below 0: it is scored as log1p(value), with at least the Poisson noise of a
  count of that size (2 active users falling to 1 is not news);
- a **change** (the churn signal: 1 − active users / those a day or a week before) is a ratio of two
  counts: a move of `_CHANGE_FLOOR` (5 points) is never more than one σ, however steady the
  stream was, and with the earlier count as its denominator b it has at least the Poisson
  noise of a/b, √((1 − e)(2 − e)/b) at an expected change e (3 users a week ago and 2 now is
  under one σ, not a 33 % collapse);
- **latency** is a skewed distribution, scored in log space too (a doubling is a doubling
  whatever the usual level); its p95 over n requests (the denominator) is known to no better
  than `LATENCY_SPREAD`/√n in log space: at 3 requests an hour the "p95" is one request of a
  route mix from 2 ms health checks to 400 ms reports. Measured on the generator's tenants,
  the spread × √n of an hour's log p95 is 1.4–1.6 below 20 requests; the floor takes 1.0.
  Without it, quiet hours were judged with the σ of busy ones and made decisive false alerts
  (7 of the demo's 21 anomalies).

Every kind also gets a σ floor of `REL_FLOOR` of the expected level (in the space it is
scored in), so a stream that never moved cannot turn a rounding error into a page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from statistics import NormalDist
from typing import Final

from schemas.anomaly import MetricName

__all__ = ["EXACT_MAX_N", "KIND_OF", "LATENCY_SPREAD", "REL_FLOOR", "Kind", "base_floor", "binomial_z", "decode",
           "encode", "floor_sigma", "poisson_low_z", "scored_raw", "value_sigma"]


class Kind(StrEnum):
    COUNT = "count"
    PROPORTION = "proportion"
    MONEY = "money"
    AMOUNT = "amount"
    LATENCY = "latency"
    CHANGE = "change"
    LEVEL = "level"  # any real number (NAB series, derived signals): no model of its noise


_M = MetricName
KIND_OF: Final[Mapping[MetricName, Kind]] = {
    _M.REQUEST_VOLUME: Kind.COUNT, _M.ERROR_EVENTS: Kind.COUNT, _M.CANCELLATIONS: Kind.COUNT,
    _M.ERROR_RATE: Kind.PROPORTION, _M.CLIENT_ERROR_RATIO: Kind.PROPORTION, _M.TOP_IP_SHARE: Kind.PROPORTION,
    _M.REVENUE: Kind.MONEY, _M.STORAGE_BYTES: Kind.AMOUNT, _M.ACTIVE_USERS: Kind.AMOUNT,
    _M.LATENCY_P95: Kind.LATENCY, _M.ACTIVE_USER_DECLINE: Kind.CHANGE,
}
REL_FLOOR: Final = 0.01  # σ ≥ 1 % of |expected| in the scored space
_ABS_FLOOR: Final = 1e-9
_LOG_FLOOR: Final = 0.05  # log space: a 5 % move is never more than one σ
_CHANGE_FLOOR: Final = 0.05
LATENCY_SPREAD: Final = 1.0  # log-spread of one request's latency a p95 of n requests is known to, over √n
_LOGGED: Final = frozenset({Kind.AMOUNT, Kind.LATENCY})


def scored_raw(kind: Kind) -> bool:
    """Whether the kind is scored on the value itself (no √ or log): its baselines need no change."""
    return kind not in _LOGGED and kind is not Kind.MONEY


def encode(kind: Kind, value: float) -> float:
    """The value in the space the baseline learns and scores it in."""
    if kind in _LOGGED:
        return math.log1p(max(value, 0.0))
    return math.sqrt(max(value, 0.0)) if kind is Kind.MONEY else value


def decode(kind: Kind, x: float) -> float:
    """Back from the scored space to the metric's own units."""
    if kind in _LOGGED:
        return math.expm1(min(x, 700.0))
    if kind is Kind.MONEY:
        return max(x, 0.0) ** 2
    if kind in (Kind.COUNT, Kind.PROPORTION):
        return max(x, 0.0) if kind is Kind.COUNT else min(max(x, 0.0), 1.0)
    return x


def floor_sigma(kind: Kind, expected: float, sigma: float, denominator: float | None = None) -> float:
    """σ no smaller than the kind's own noise at `expected` (scored space; n = `denominator`)."""
    floor = max(_ABS_FLOOR, REL_FLOOR * abs(expected))
    if kind is Kind.COUNT:
        floor = max(floor, math.sqrt(max(expected, 0.0) + 1.0))  # Poisson, +1 so μ = 0 still has a σ
    elif kind is Kind.PROPORTION and denominator is not None and denominator > 0:  # unknown n: no model
        n = denominator
        p = (min(max(expected, 0.0), 1.0) * n + 1.0) / (n + 2.0)
        floor = max(floor, math.sqrt(p * (1.0 - p) / n))
    elif kind is Kind.AMOUNT:  # a count of users is a count: √c noise, i.e. √c/(c + 1) in log space
        level = max(decode(kind, expected), 0.0)
        floor = max(floor, _LOG_FLOOR, math.sqrt(level) / (level + 1.0))
    elif kind is Kind.LATENCY:
        floor = max(floor, _LOG_FLOOR)
        if denominator is not None and denominator > 0:  # a p95 of n requests: known to ~spread/√n
            floor = max(floor, LATENCY_SPREAD / math.sqrt(denominator))
    elif kind is Kind.CHANGE:
        floor = max(floor, _CHANGE_FLOOR)
        if denominator is not None and denominator > 0:  # a/b with a ≈ b(1 − e), both Poisson
            kept = max(1.0 - expected, 0.0)
            floor = max(floor, math.sqrt(kept * (1.0 + kept) / denominator))
    return max(sigma, floor)


def base_floor(kind: Kind) -> float:
    """The smallest σ a baseline of this kind uses when it winsorises what it learns.

    Without it a stream that was flat (a count at 0) has σ = 0, clips every later value back
    to the flat level, and never learns that the level moved.
    """
    if kind is Kind.COUNT:
        return 1.0
    if kind in _LOGGED:
        return _LOG_FLOOR
    return _CHANGE_FLOOR if kind is Kind.CHANGE else _ABS_FLOOR


def value_sigma(kind: Kind, expected: float, sigma: float) -> float:
    """σ in the metric's own units around `expected` (both in the scored space)."""
    if kind not in _LOGGED and kind is not Kind.MONEY:
        return sigma
    return 0.5 * (decode(kind, expected + sigma) - decode(kind, expected - sigma))


EXACT_MAX_N: Final = 500  # above this many requests the normal approximation is good
_EVENTS_PER_DAY: Final = 1.0  # the rarest usual rate trusted: one event a day at this window's traffic
_NORMAL = NormalDist()


def binomial_z(value: float, expected: float, n: float) -> float | None:
    """z of P(X ≥ k) for X ~ Binomial(n, p), k = value·n, p = `expected` (at least one event a
    day at n per hour); None when n is out of range or k is not above the expected count.

    The normal quantile of the exact upper tail, so it reads like any other score.
    """
    trials = round(n)
    if trials < 1 or trials > EXACT_MAX_N:
        return None
    k = round(value * trials)
    # A rate far below one event a day at this traffic cannot be known from the history an
    # hourly baseline keeps; taking it at face value makes one stray 4xx a 4σ event.
    p = min(max(expected, _EVENTS_PER_DAY / (24.0 * trials)), 1.0 - 1e-9)
    if k <= p * trials:
        return None
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(trials + 1) - math.lgamma(j + 1) - math.lgamma(trials - j + 1) + j * log_p
             + (trials - j) * log_q for j in range(k, trials + 1)]
    top = max(terms)
    tail = math.exp(top) * math.fsum(math.exp(t - top) for t in terms)
    return -_NORMAL.inv_cdf(min(max(tail, 1e-300), 0.5))


_POISSON_MAX: Final = 1000.0  # above this many expected events the normal approximation is good


def poisson_low_z(k: float, lam: float) -> float | None:
    """z (≤ 0) of P(N ≤ k) for N ~ Poisson(`lam`); None when k is not below `lam` or `lam` is
    out of range (≤ 0, or so large the normal approximation serves).

    The normal quantile of the exact lower tail, so it reads like any other (signed) score.
    """
    count = math.floor(max(k, 0.0) + 1e-9)
    if not 0 < lam <= _POISSON_MAX or count >= lam:
        return None
    log_lam = math.log(lam)
    terms = [j * log_lam - lam - math.lgamma(j + 1) for j in range(count + 1)]
    top = max(terms)
    tail = math.exp(top) * math.fsum(math.exp(t - top) for t in terms)
    return _NORMAL.inv_cdf(min(max(tail, 1e-300), 0.5))
