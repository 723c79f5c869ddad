"""Severity of a deviation, from its size in σ and in percent of the expected value.

A level is reached when *either* measure reaches it, except that a tiny relative change
(< 5 %) is never above `medium`: a 10σ move of a very steady metric by 1 % is worth a look,
not a page. Thresholds (|deviation|):

| severity | σ      | or %    |
|----------|--------|---------|
| low      | < 4    | < 25 %  |
| medium   | ≥ 4    | ≥ 25 %  |
| high     | ≥ 6    | ≥ 50 %  |
| critical | ≥ 10   | ≥ 80 %  |

The % measure is ignored when the expected value is 0 (no meaningful percentage).
"""

from __future__ import annotations

from schemas.anomaly import Severity

__all__ = ["SEVERITY_ORDER", "classify", "worst"]

SEVERITY_ORDER = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)
_SIGMA_STEPS = (4.0, 6.0, 10.0)
_PCT_STEPS = (25.0, 50.0, 80.0)
_SMALL_PCT = 5.0


def _level(value: float, steps: tuple[float, ...]) -> int:
    return sum(1 for step in steps if value >= step)


def classify(deviation_sigma: float, deviation_pct: float | None) -> Severity:
    """Severity of one point's deviation (signed inputs; only magnitudes matter)."""
    by_sigma = _level(abs(deviation_sigma), _SIGMA_STEPS)
    if deviation_pct is None:
        return SEVERITY_ORDER[by_sigma]
    pct = abs(deviation_pct)
    level = max(by_sigma, _level(pct, _PCT_STEPS))
    if pct < _SMALL_PCT:
        level = min(level, 1)
    return SEVERITY_ORDER[level]


def worst(a: Severity, b: Severity) -> Severity:
    return a if SEVERITY_ORDER.index(a) >= SEVERITY_ORDER.index(b) else b
