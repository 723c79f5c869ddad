"""Anomaly likelihood over recent scores (Numenta's, after Ahmad et al. 2017), pure and saveable.

A detector's raw scores are not comparable across series: a noisy, heavy-tailed series has
points beyond 3.5σ every day, a smooth one never. The likelihood asks instead whether the
*recent* scores are unusual for *this* series: the mean of the last `short` |scores| against
the mean and spread of such means over the last `long` points. `z()` is that standardised
mean; a rule with `likelihood_sigma` > 0 lets a point out of band only when it is at least
that, so a series that always jumps needs a bigger jump than one that never does.

Scores are clipped at `CLIP` first (one huge point should raise the likelihood, not own it).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from agents.anomaly.baseline import RollingStats
from pipeline.runtime.snapshot import Fields, floats_to_text

__all__ = ["CLIP", "Likelihood"]

CLIP = 10.0
_MIN_HISTORY = 288  # means learnt before the likelihood says anything (NAB's: a day of 5-minute points)


class Likelihood:
    """Short mean of |score| against the rolling distribution of such means."""

    __slots__ = ("_long", "_short")

    def __init__(self, short: int = 10, long: int = 2016) -> None:
        self._short: deque[float] = deque(maxlen=short)
        self._long = RollingStats(long)

    def z(self, score: float) -> float | None:
        """Standardised mean of the recent |scores| with `score` as the newest; None while learning."""
        if self._long.n < _MIN_HISTORY:
            return None
        mean, std = self._long.mean, self._long.std
        if mean is None or std is None:
            return None
        short = self._short
        clipped = min(abs(score), CLIP)
        full = len(short) == short.maxlen
        total = sum(short) - (short[0] if full else 0.0) + clipped
        recent = total / (len(short) + (0 if full else 1))
        return (recent - mean) / max(std, 1e-3)

    def update(self, score: float) -> None:
        self._short.append(min(abs(score), CLIP))
        self._long.update(sum(self._short) / len(self._short))

    def snapshot(self) -> dict[str, Any]:
        return {"short_size": self._short.maxlen, "short": floats_to_text(self._short), "long": self._long.snapshot()}

    @classmethod
    def restore(cls, data: object) -> Likelihood:
        f = Fields(data, "likelihood")
        out = cls(f.integer("short_size", 1, 1000))
        values = f.floats("short", out._short.maxlen or 0)
        if any(math.isnan(v) or not 0 <= v <= CLIP for v in values):
            raise f.fail("short", "scores must lie in [0, CLIP]")
        out._short.extend(values)
        out._long = RollingStats.restore(f.raw("long"))
        return out
