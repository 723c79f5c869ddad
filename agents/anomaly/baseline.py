"""Per-(tenant, metric) baseline: a rolling level plus an optional hour-of-day/-week profile.

How the expected value of a point at time `t` is built (all windows are rolling):

- points are averaged into *buckets* of `bucket_s` seconds (one hour by default), so memory
  is bounded by the number of buckets kept, whatever the metric's rate;
- **level** = mean of the last `level_buckets` completed bucket means (river `stats.Var`
  over a rolling window, `RollingStats`);
- **seasonal offset** of a slot (hour of day, or hour of week) = mean over the last
  `history_days` occurrences (weeks for the weekly profile) of that slot of
  (bucket mean − level at the time), kept in a compact ring (`SlotProfile`); with
  `shrink_weekly` (the product's metrics, `detector._shrinks_weekly`) a weekly slot's mean is
  shrunk towards the mean of all slots by how little its two samples say (empirical Bayes,
  `SlotProfile.shrunk`);
- **σ** = the larger of 1.4826 × rolling median |residual| (MAD) and the rolling `tail_q`
  quantile of |residual| over its normal value, over the last `scale_window` points
  (`RollingQuantiles`, river's `stats.RollingQuantile` in Python, so its window can be
  saved): robust to single outliers, honest about heavy tails.

Two timescales are scored: the point itself (`Estimate.deviation`), and the mean residual of
the open bucket against the spread of past bucket means (`Estimate.slow_deviation`), which
catches level shifts and bursts of moderate points that no single point reveals.

`Season.AUTO` scores each point under the three models (none, daily, weekly) and uses the
seasonal ones only where their σ is clearly smaller (`auto_gain`): a normal night is then
expected, while a flat series never pays for a profile it does not have.

Robustness: before a value is learnt it is winsorised to expected ± `clip_sigma`·σ, and the
residuals feeding σ are clipped at `scale_clip_sigma`·σ, so an anomaly cannot drag the
baseline; a lasting level shift or a real change in noise is still absorbed, just slowly.
Scoring reads state only (`estimate` closes buckets that time has left, which uses no value):
callers score a point first and `update` after.

State: `snapshot()` gives a JSON-ready dict, `SeasonalBaseline.restore` rebuilds it and
refuses (`SnapshotError`) anything malformed or oversized: the table codec of the anomaly
agent (`agents.anomaly.state_codec`), never pickle.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import deque
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from river import stats

from agents.anomaly.river_state import set_var_state, var_state
from pipeline.runtime.snapshot import Fields, floats_to_text
from schemas.anomaly import Season

__all__ = ["Estimate", "RollingQuantiles", "RollingStats", "SeasonalBaseline", "SlotProfile"]

MAX_WINDOW = 100_000  # the largest window a snapshot may restore (defaults: 24 to 512)

_MAD_TO_SIGMA = 1.4826  # σ of a normal distribution per unit of median absolute deviation
_DAY_S = 86_400.0


class RollingStats:
    """Mean and sample standard deviation over the last `window` values.

    river's revertible `stats.Var` over a window of plain floats: what `utils.Rolling(Var)`
    does, without its per-value argument tuples, so the state is small and fast to save.
    """

    __slots__ = ("_var", "_window")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be ≥ 1")
        self._var = stats.Var(ddof=1)
        self._window: deque[float] = deque(maxlen=window)

    def update(self, x: float) -> RollingStats:
        if len(self._window) == self._window.maxlen:
            self._var.revert(self._window[0])
        self._window.append(x)
        self._var.update(x)
        return self

    @property
    def n(self) -> int:
        return len(self._window)

    @property
    def mean(self) -> float | None:
        return float(self._var.mean.get()) if self._window else None

    @property
    def std(self) -> float | None:
        if len(self._window) < 2:
            return None
        var = float(self._var.get())
        return math.sqrt(var) if var > 0 else 0.0  # rounding can leave a tiny negative variance

    def snapshot(self) -> dict[str, Any]:
        n, mean, s = var_state(self._var)
        return {"size": self._window.maxlen, "window": floats_to_text(self._window), "n": n, "mean": mean, "s": s}

    @classmethod
    def restore(cls, data: object) -> RollingStats:
        f = Fields(data, "rolling")
        out = cls(f.integer("size", 1, MAX_WINDOW))
        out._window.extend(f.floats("window", out._window.maxlen or 0))
        set_var_state(out._var, f.number("n", 0, MAX_WINDOW), f.number("mean"), f.number("s"))
        return out


class SlotProfile:
    """Per-slot rolling means (hour of day / of week) in one flat float array: compact to save.

    Each slot keeps its last `window` samples in a ring; windows are short (days or weeks),
    so the mean is a plain sum over at most `window` floats.

    `shrunk` (what a baseline with `shrink_weekly` expects of a weekly slot) is the slot's mean
    pulled towards the mean of all slots by how little its own samples say (empirical Bayes,
    the James-Stein estimate). A
    weekly slot holds two samples; where a stream's noise is larger than its real weekly
    shape, two samples are mostly noise. Unshrunk, they made the expected error ratio of a
    quiet hour 0.0045 and of the next 0.13 for a tenant whose 4xx share is 6 % at every
    hour (a night hour of 10 requests usually has no 4xx: the two samples were 0), and such an
    hour with 3 of 13 requests failing was a decisive 4σ anomaly. The shrinkage is
    τ² / (τ² + s²/k) for a slot of k samples, with s² the pooled variance of the samples
    around their slot's mean and τ² the variance of the slots' true means (the variance of
    the slot means, less what their noise explains; at least 0): a real shape is kept whole,
    a shape of noise is flattened.
    """

    __slots__ = ("_count", "_fit", "_inv", "_means", "_pos", "_squares", "_ss", "_ss_stale", "_values", "slots",
                 "window")

    def __init__(self, slots: int, window: int) -> None:
        self.slots, self.window = slots, window
        self._values = array("d", bytes(8 * slots * window))
        self._count = array("H", bytes(2 * slots))
        self._pos = array("H", bytes(2 * slots))
        self._derive()

    def _derive(self) -> None:
        """Per-slot figures the shrinkage reads, from the samples (kept as slots change; not saved)."""
        slots = self.slots
        self._means = array("d", bytes(8 * slots))  # a slot's mean (0 while empty)
        self._squares = array("d", bytes(8 * slots))  # its mean squared
        self._inv = array("d", bytes(8 * slots))  # 1 / its sample count
        self._ss = array("d", bytes(8 * slots))  # Σ (sample − its mean)², of the slots not in `_ss_stale`
        self._ss_stale: set[int] = set()  # computed when the shrinkage is next read (a daily profile never is)
        self._fit: tuple[float, float, float] | None = None  # (centre, τ², s²), refitted after an update
        for slot in range(slots):
            if self._count[slot]:
                self._slot_changed(slot)

    def _slot_changed(self, slot: int) -> None:
        k = self._count[slot]
        base = slot * self.window
        m = math.fsum(self._values[base : base + k]) / k
        self._means[slot], self._squares[slot], self._inv[slot] = m, m * m, 1.0 / k
        self._ss_stale.add(slot)
        self._fit = None

    def update(self, slot: int, x: float) -> None:
        base = slot * self.window
        self._values[base + self._pos[slot]] = x
        self._pos[slot] = (self._pos[slot] + 1) % self.window
        self._count[slot] = min(self._count[slot] + 1, self.window)
        self._slot_changed(slot)

    def count(self, slot: int) -> int:
        return self._count[slot]

    def mean(self, slot: int) -> float | None:
        return self._means[slot] if self._count[slot] else None

    def shrunk(self, slot: int) -> float | None:
        """The slot's mean shrunk towards the mean of all slots (see the class); None if empty."""
        n = self._count[slot]
        if not n:
            return None
        if self._fit is None:
            self._fit = self._refit()
        centre, tau2, within = self._fit
        noise = within / n
        weight = 1.0 if noise <= 0.0 else tau2 / (tau2 + noise)
        return centre + weight * (self._means[slot] - centre)

    def _refit(self) -> tuple[float, float, float]:
        """(centre, τ², s²) over the slots with samples: sums over the per-slot arrays (C loops;
        the same arrays give the same sums, so a restored profile continues identically)."""
        window, values, means = self.window, self._values, self._means
        for slot in self._ss_stale:
            k = self._count[slot]
            m, base = means[slot], slot * window
            self._ss[slot] = sum([(v - m) * (v - m) for v in values[base : base + k]]) if k > 1 else 0.0
        self._ss_stale.clear()
        filled = self.slots - self._count.count(0)
        dof = sum(self._count) - filled
        if filled < 2 or not dof:  # nothing tells noise from shape yet: the means as they are
            return 0.0, 1.0, 0.0
        within = sum(self._ss) / dof
        total = sum(self._means)
        centre = total / filled
        between = max(0.0, sum(self._squares) - total * centre) / (filled - 1)
        tau2 = max(0.0, between - within * sum(self._inv) / filled)
        return centre, tau2, within

    def snapshot(self) -> dict[str, Any]:
        return {"slots": self.slots, "window": self.window, "values": floats_to_text(self._values),
                "count": list(self._count), "pos": list(self._pos)}

    @classmethod
    def restore(cls, data: object) -> SlotProfile:
        f = Fields(data, "profile")
        slots, window = f.integer("slots", 1, 7 * 24 * 60), f.integer("window", 1, 1000)
        if slots * window > MAX_WINDOW:
            raise f.fail("window", f"{slots} × {window} values is too many")
        out = cls(slots, window)
        values = f.floats("values", slots * window)
        count, pos = f.items("count", slots), f.items("pos", slots)
        if len(values) != slots * window or len(count) != slots or len(pos) != slots:
            raise f.fail("values", "sizes do not match slots × window")
        if not all(type(c) is int and 0 <= c <= window for c in count) or not all(
                type(p) is int and 0 <= p < window for p in pos):
            raise f.fail("count", "counts and positions must lie within the window")
        out._values, out._count, out._pos = values, array("H", count), array("H", pos)
        out._derive()
        return out


class RollingQuantiles:
    """Quantiles of the last `window` values: river's `stats.RollingQuantile`, in Python.

    river's is a Rust object whose window cannot be read, hence saved without pickle. Same
    definition (linear interpolation between the order statistics around q·(n−1)), equal to
    it on every value (test oracle); one sorted window serves every quantile asked for.
    """

    __slots__ = ("_ring", "_sorted")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be ≥ 1")
        self._ring: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []

    def update(self, x: float) -> None:
        ring = self._ring
        if len(ring) == ring.maxlen:
            del self._sorted[bisect.bisect_left(self._sorted, ring[0])]
        ring.append(x)
        bisect.insort(self._sorted, x)

    def get(self, q: float) -> float | None:
        s = self._sorted
        if not s:
            return None
        idx = q * (len(s) - 1)
        lo = math.floor(idx)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (idx - lo)

    def snapshot(self) -> dict[str, Any]:
        return {"size": self._ring.maxlen, "window": floats_to_text(self._ring)}

    @classmethod
    def restore(cls, data: object) -> RollingQuantiles:
        f = Fields(data, "quantiles")
        out = cls(f.integer("size", 1, MAX_WINDOW))
        values = f.floats("window", out._ring.maxlen or 0)
        if math.isnan(sum(values)):  # values are |residuals|: only a NaN makes the sum NaN
            raise f.fail("window", "NaN in a quantile window")
        out._ring.extend(values)
        out._sorted = sorted(values)
        return out


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a point is compared against: expected value, σ, and whether a profile was used."""

    expected: float
    sigma: float
    season: Season
    clip_sigma: float = 4.0
    # The slow timescale: residuals so far in the open bucket, σ of past bucket-mean residuals,
    # and the usual number of points per bucket. None until enough buckets were seen.
    bucket_resid: float = 0.0
    bucket_n: int = 0
    bucket_sigma: float | None = None
    per_bucket: float = 1.0
    min_fill: float = 0.5  # the slow test waits until the open bucket is this full

    def deviation(self, value: float, cap: float = 1e6) -> float:
        """Signed (value − expected)/σ; σ = 0 gives ±cap for any difference, 0 for none."""
        return _ratio(value - self.expected, self.sigma, cap)

    def clipped_residual(self, value: float, noise: float = 0.0) -> float:
        """value − expected, winsorised at `clip_sigma` × σ (σ no smaller than `noise`)."""
        half = self.clip_sigma * max(self.sigma, noise)
        return min(max(value - self.expected, -half), half)

    def slow_deviation(self, value: float, cap: float = 1e6) -> float | None:
        """Signed z of the open bucket's mean residual (this point included), or None.

        A partial bucket of k points is judged with σ·√(per_bucket/k): few points need a
        larger mean to count, as the mean of k independent points would.
        """
        k = self.bucket_n + 1
        if self.bucket_sigma is None or k < self.per_bucket * self.min_fill:
            return None
        mean = (self.bucket_resid + self.clipped_residual(value)) / k
        return _ratio(mean, self.bucket_sigma * math.sqrt(max(self.per_bucket / k, 1.0)), cap)


def _ratio(diff: float, sigma: float, cap: float) -> float:
    if sigma > 0:
        return max(-cap, min(cap, diff / sigma))
    if diff == 0:
        return 0.0
    return cap if diff > 0 else -cap


class _Scale:
    """σ of a model's residuals: the larger of two normal-consistent robust estimates.

    The MAD is right for well-behaved noise; heavy-tailed noise (bursty traffic, latency)
    has a MAD far below its real spread, so the `tail_q` quantile of |residual| divided by
    the normal's value at that quantile is the other candidate. On normal noise both agree.
    """

    __slots__ = ("_abs", "_sigma", "_stale", "_tail_q", "_tail_z", "n")

    def __init__(self, window: int, tail_q: float) -> None:
        if not 0 < tail_q < 1:
            raise ValueError("tail_q must lie in (0, 1)")
        self._abs = RollingQuantiles(window)  # |residual|
        self._tail_q = tail_q
        self._tail_z = NormalDist().inv_cdf(0.5 + tail_q / 2)  # |N(0,1)| quantile
        self.n = 0
        self._sigma: float | None = None
        self._stale = False  # σ is read several times per point, changed once: kept until then

    def update(self, residual: float) -> None:
        self._abs.update(abs(residual))
        self.n += 1
        self._stale = True

    def sigma(self) -> float | None:
        if self._stale:
            med, tail = self._abs.get(0.5), self._abs.get(self._tail_q)
            self._sigma = None if med is None or tail is None else max(_MAD_TO_SIGMA * med, tail / self._tail_z)
            self._stale = False
        return self._sigma

    def snapshot(self) -> dict[str, Any]:
        return {"abs": self._abs.snapshot(), "q": self._tail_q, "n": self.n}

    @classmethod
    def restore(cls, data: object) -> _Scale:
        f = Fields(data, "scale")
        out = cls(1, f.number("q", 1e-9, 1 - 1e-9))
        out._abs = RollingQuantiles.restore(f.raw("abs"))
        out.n = f.integer("n")
        out._stale = True
        return out


class SeasonalBaseline:
    """Rolling, seasonality-aware baseline of one stream. Picklable (lives in a Faust table)."""

    def __init__(
        self,
        *,
        season: Season = Season.AUTO,
        bucket_s: float = 3600.0,
        level_buckets: int = 24,
        history_days: int = 14,
        scale_window: int = 512,
        tail_q: float = 0.99,
        bucket_window: int = 336,
        min_buckets: int = 24,
        min_fill: float = 0.5,
        min_points: int = 12,
        clip_sigma: float = 4.0,
        scale_clip_sigma: float = 8.0,
        sigma_floor: float = 1e-9,
        auto_gain: float = 0.75,
        shrink_weekly: bool = False,
    ) -> None:
        if bucket_s <= 0 or _DAY_S % bucket_s:
            raise ValueError("bucket_s must divide a day")
        self.season = season
        self.bucket_s = bucket_s
        self.history_days = history_days
        self.min_points = min_points
        self.clip_sigma = clip_sigma
        self.scale_clip_sigma = scale_clip_sigma
        self.sigma_floor = sigma_floor
        self.auto_gain = auto_gain
        # Weekly slot means (two samples each) shrunk by empirical Bayes (`SlotProfile.shrunk`):
        # set for the product's metric kinds (`StreamDetector`), whose samples carry count noise.
        self.shrink_weekly = shrink_weekly
        self.level = RollingStats(level_buckets)
        per_day = round(_DAY_S / bucket_s)
        self._offsets = {
            Season.DAILY: SlotProfile(per_day, history_days),
            Season.WEEKLY: SlotProfile(7 * per_day, max(2, history_days // 7)),
        }
        self._scales = {s: _Scale(scale_window, tail_q) for s in (Season.NONE, Season.DAILY, Season.WEEKLY)}
        self._bucket: int | None = None
        self._bucket_sum = 0.0
        self._bucket_n = 0
        self._resid_sum = 0.0  # clipped residuals learnt in the open bucket
        self._bucket_scale = _Scale(bucket_window, tail_q)
        self._per_bucket = RollingStats(level_buckets)
        self.min_buckets = min_buckets
        self.min_fill = min_fill
        self.n = 0  # points learnt

    # -- state -------------------------------------------------------------------------------
    _KNOBS = ("bucket_s", "clip_sigma", "scale_clip_sigma", "sigma_floor", "auto_gain", "min_fill")
    _COUNTS = ("history_days", "min_points", "min_buckets", "n")

    def snapshot(self) -> dict[str, Any]:
        """Everything the baseline knows, JSON-ready (see `restore`)."""
        return {
            "season": self.season.value,
            **{k: getattr(self, k) for k in self._KNOBS + self._COUNTS},
            "shrink_weekly": self.shrink_weekly,
            "level": self.level.snapshot(), "per_bucket": self._per_bucket.snapshot(),
            "offsets": {s.value: p.snapshot() for s, p in self._offsets.items()},
            "scales": {s.value: sc.snapshot() for s, sc in self._scales.items()},
            "bucket_scale": self._bucket_scale.snapshot(),
            "bucket": self._bucket, "bucket_sum": self._bucket_sum, "bucket_n": self._bucket_n,
            "resid_sum": self._resid_sum,
        }

    @classmethod
    def restore(cls, data: object) -> SeasonalBaseline:
        """The baseline `snapshot` described; SnapshotError for anything else."""
        f = Fields(data, "baseline")
        try:
            season = Season(f.text("season", 16))
        except ValueError:
            raise f.fail("season", "unknown season") from None
        knobs = {k: f.number(k, 0, 1e12, finite=True) for k in cls._KNOBS}
        if knobs["bucket_s"] <= 0 or _DAY_S % knobs["bucket_s"]:
            raise f.fail("bucket_s", "must divide a day")
        out = cls(season=season, bucket_s=knobs["bucket_s"])
        for k, v in knobs.items():
            setattr(out, k, v)
        for k in cls._COUNTS:
            setattr(out, k, f.integer(k))
        shrink = data.get("shrink_weekly", False) if isinstance(data, dict) else False  # absent: saved before it
        if not isinstance(shrink, bool):
            raise f.fail("shrink_weekly", "must be true or false")
        out.shrink_weekly = shrink
        out.level, out._per_bucket = RollingStats.restore(f.raw("level")), RollingStats.restore(f.raw("per_bucket"))
        offsets, scales = f.sub("offsets"), f.sub("scales")
        out._offsets = {s: SlotProfile.restore(offsets.raw(s.value)) for s in (Season.DAILY, Season.WEEKLY)}
        out._scales = {s: _Scale.restore(scales.raw(s.value)) for s in (Season.NONE, Season.DAILY, Season.WEEKLY)}
        out._bucket_scale = _Scale.restore(f.raw("bucket_scale"))
        out._bucket = f.opt_integer("bucket", -(2**53), 2**53)
        out._bucket_sum, out._resid_sum = f.number("bucket_sum"), f.number("resid_sum")
        out._bucket_n = f.integer("bucket_n")
        return out

    # -- reading -----------------------------------------------------------------------------
    def _models(self, ts: float) -> dict[Season, float]:
        """Expected value under each model that has enough history."""
        level = self.level.mean
        if level is None:
            return {}
        out = {Season.NONE: level}
        bucket = math.floor(ts / self.bucket_s)
        for season, profile in self._offsets.items():
            slot = bucket % profile.slots
            offset = profile.shrunk(slot) if season is Season.WEEKLY and self.shrink_weekly else profile.mean(slot)
            need = 3 if season is Season.DAILY else 2
            if offset is not None and profile.count(slot) >= need:
                out[season] = level + offset
        return out

    def estimate(self, ts: float) -> Estimate | None:
        """The estimate for a point at `ts`, or None while warming up. Does not learn the value."""
        self._roll_to(ts)
        models = self._models(ts)
        if not models or self.n < self.min_points:
            return None
        chosen = self._choose(models)
        if chosen is None:
            return None
        sigma = self._scales[chosen].sigma()
        if sigma is None:
            return None
        expected = models[chosen]
        slow = self._bucket_scale.sigma() if self._bucket_scale.n >= self.min_buckets else None
        per_bucket = self._per_bucket.mean
        return Estimate(
            expected,
            max(sigma, self.sigma_floor),
            chosen,
            self.clip_sigma,
            self._resid_sum,
            self._bucket_n,
            None if slow is None else max(slow, self.sigma_floor),
            1.0 if per_bucket is None else per_bucket,
            self.min_fill,
        )

    def _choose(self, models: dict[Season, float]) -> Season | None:
        if self.season is not Season.AUTO:
            if self.season in models:
                return self.season
            return Season.NONE if self.season is Season.NONE else None
        best = Season.NONE
        plain = self._scales[Season.NONE].sigma()
        if plain is None:
            return None
        best_sigma = plain
        for season in (Season.DAILY, Season.WEEKLY):
            scale = self._scales[season]
            sigma = scale.sigma()
            ready = season in models and sigma is not None and scale.n >= self.min_points
            if ready and sigma is not None and sigma < self.auto_gain * best_sigma:
                best, best_sigma = season, sigma
        return best

    # -- learning ----------------------------------------------------------------------------
    def update(self, ts: float, value: float, noise: float = 0.0, *,
               scored: tuple[Estimate | None] | None = None) -> SeasonalBaseline:
        """Learn a point (after it was scored). Out-of-band values are winsorised first.

        `scored`: (`estimate(ts)`,) when the caller has just asked for it and learnt nothing
        since: the same estimate, not computed twice (half the cost of a point).

        `noise`: the point's own σ when the caller knows it is larger than the stream's usual
        spread (a proportion of few requests): it is winsorised no tighter than that, else a
        right-skewed quiet hour (0 of 11 failing, then 2 of 11) is clipped towards 0 and the
        level of a rare rate is learnt too low.
        """
        self._roll_to(ts)
        models = self._models(ts)
        est = self.estimate(ts) if scored is None else scored[0]
        for season, expected in models.items():
            scale = self._scales[season]
            sigma = scale.sigma()
            resid = value - expected
            if sigma is not None and scale.n >= self.min_points:  # an outlier widens σ only a little
                half = self.scale_clip_sigma * max(sigma, self.sigma_floor)
                resid = min(max(resid, -half), half)
            scale.update(resid)
        if est is not None:
            resid = est.clipped_residual(value, noise)
            self._resid_sum += resid
            value = est.expected + resid
        self._bucket_sum += value
        self._bucket_n += 1
        self.n += 1
        return self

    def _roll_to(self, ts: float) -> None:
        bucket = math.floor(ts / self.bucket_s)
        if self._bucket is None:
            self._bucket = bucket
            return
        if bucket <= self._bucket:  # same bucket, or a late point: it joins the open bucket
            return
        if self._bucket_n:
            mean = self._bucket_sum / self._bucket_n
            level = self.level.mean
            if level is not None:
                for profile in self._offsets.values():
                    profile.update(self._bucket % profile.slots, mean - level)
            self.level.update(mean)
            self._per_bucket.update(self._bucket_n)
            self._bucket_scale.update(self._resid_sum / self._bucket_n)
        self._bucket, self._bucket_sum, self._bucket_n, self._resid_sum = bucket, 0.0, 0, 0.0
