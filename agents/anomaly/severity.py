"""Severity of an anomalous point, from its impact and from how sure the detector is (pure).

Severity = the lower of two levels, so a page needs both a real impact and a clear signal:

**Impact** is what the owner loses, in the metric's own terms (not in σ):

| metric                 | impact measure                           | medium | high   | critical |
|------------------------|------------------------------------------|--------|--------|----------|
| error_rate             | share of requests failing (the value)    | 2 %    | 10 %   | 20 %     |
| revenue                | share of expected revenue missing        | 25 %   | 50 %   | 90 %     |
| active_users           | share of expected users gone             | 20 %   | 50 %   | 80 %     |
| latency_p95            | value ÷ expected                         | ×1.5   | ×3     | ×10      |
| every other metric     | value ÷ expected, or its inverse         | ×1.5   | ×3     | never    |

Failing share is scaled by the requests behind it: fewer than `_MIN_REQUESTS` failing
requests in the window cap the error rate at `high` (one failure in three requests is not a
page). Usage spikes, 4xx storms, storage and the like never page: they are worth a look,
not a night call. Derived signals in [0, 1] (top-IP share, churn decline) use the absolute
change instead of a ratio.

**Confidence** is |deviation| in σ of the kind-aware noise model (`kinds`): below 4σ at most
`medium`, below 6σ at most `high`.
"""

from __future__ import annotations

from typing import Final

from schemas.anomaly import MetricName, Severity

__all__ = ["SEVERITY_ORDER", "assess", "confidence_level", "impact_level", "worst"]

SEVERITY_ORDER = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)
_M = MetricName
_NEVER: Final = float("inf")
_SHARE_MISSING: Final = {_M.REVENUE: (0.25, 0.5, 0.9), _M.ACTIVE_USERS: (0.2, 0.5, 0.8)}
_RATIO_STEPS: Final = {_M.LATENCY_P95: (1.5, 3.0, 10.0)}
_DEFAULT_RATIO: Final = (1.5, 3.0, _NEVER)
_ERROR_SHARE: Final = (0.02, 0.10, 0.20)
_ABSOLUTE: Final = {_M.TOP_IP_SHARE: (0.1, 0.3, _NEVER), _M.ACTIVE_USER_DECLINE: (0.1, 0.3, _NEVER)}
_MIN_REQUESTS: Final = 20.0  # failing requests a critical error rate needs behind it
_CONFIDENCE: Final = (3.0, 4.0, 6.0)  # σ for low→medium→high→critical allowed


def _level(value: float, steps: tuple[float, ...]) -> int:
    return sum(1 for step in steps if value >= step)


def impact_level(metric: MetricName, value: float, expected: float, denominator: float | None = None) -> int:
    """0 (low) … 3 (critical): how much the owner loses if the point is real."""
    if metric is _M.ERROR_RATE:
        level = _level(value, _ERROR_SHARE)
        if denominator is None or value * denominator < _MIN_REQUESTS:
            level = min(level, 2)
        return level
    if metric in _SHARE_MISSING:
        missing = (expected - value) / expected if expected > 0 else 0.0
        return _level(missing, _SHARE_MISSING[metric])
    if metric in _ABSOLUTE:
        return _level(abs(value - expected), _ABSOLUTE[metric])
    lo, hi = sorted((max(value, 0.0), max(expected, 0.0)))
    ratio = hi / lo if lo > 0 else (1e9 if hi > 0 else 1.0)  # from nothing: large, never "never"
    if metric is _M.LATENCY_P95 and value < expected:
        ratio = 1.0  # faster than usual hurts nobody
    return _level(ratio, _RATIO_STEPS.get(metric, _DEFAULT_RATIO))


def confidence_level(deviation_sigma: float) -> int:
    """The highest level a deviation of this many σ may reach."""
    return _level(abs(deviation_sigma), _CONFIDENCE)


def assess(metric: MetricName, deviation_sigma: float, value: float, expected: float,
           denominator: float | None = None) -> Severity:
    """Severity of one point: the lower of its impact and its confidence level."""
    level = min(impact_level(metric, value, expected, denominator), confidence_level(deviation_sigma))
    return SEVERITY_ORDER[level]


def worst(a: Severity, b: Severity) -> Severity:
    return a if SEVERITY_ORDER.index(a) >= SEVERITY_ORDER.index(b) else b
