"""The per-(tenant, metric) detector: baseline + rule → bands, anomaly episodes, status changes.

One `StreamDetector` per stream lives in the agent's Faust table under `"tenant|metric"`.
For each point, in this order:

1. score it against the baseline as it stood *before* the point (warm-up: no score), in the
   space and with the σ floor of the metric's kind (`kinds`: counts, proportions with their
   denominator, amounts and latency in log space); bands and anomalies report the expected
   value and σ back in the metric's own units;
2. the point is *out of band* when its deviation passes the rule (direction, threshold σ,
   minimum %); the rule *confirms* when N of the last M points were out of band, or at once
   when the point is beyond `DECISIVE` × the threshold (a burst shorter than a window). A
   proportion's out-of-band point also confirms when the counts of the last 2..M windows,
   pooled (Σ failures of Σ requests, against the rate expected before the run began), are
   beyond `DECISIVE` × the threshold: at night an hour holds a handful of requests, and a
   spike split across two such hours is certain only when both are read together. Revenue
   points that carry their charge count (the denominator) pool those counts likewise: the
   exact Poisson tail of the last N..M windows' charges (longer runs while they hold no
   charge at all), against the charges expected in each, confirms once it passes the rule,
   as it is N windows of evidence read together (a small tenant's revenue falling to nothing
   is certain after so many missing charges, whatever its single windows say); under
   a `sustained` rule a point is also out of band when a run of the last 2..M scores is (its
   z being the run's: sum/√m), so a lasting shift of moderate points is not missed;
3. learn the point (the baseline winsorises outliers, so an anomaly does not drag it);
4. episodes: a confirmation opens one anomaly (unless the stream is cooling down); further
   out-of-band points update that same anomaly (same id); `resolve_after` in-band points in a
   row resolve it automatically, then `cooldown` points pass before a new one may open. An
   episode closed by hand (resolved / false positive) stays silent until back in band.

The rule is passed in on every call, so runtime edits to thresholds, confirmation and
cooldown apply at once; `season` and `history_days` shape the baseline when it is created.
State travels as `snapshot()` / `StreamDetector.restore` (the agent's table codec, no pickle).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from agents.anomaly.baseline import Estimate, SeasonalBaseline
from agents.anomaly.kinds import (
    EXACT_MAX_N,
    KIND_OF,
    Kind,
    base_floor,
    binomial_z,
    decode,
    encode,
    floor_sigma,
    poisson_low_z,
    scored_raw,
    value_sigma,
)
from agents.anomaly.likelihood import Likelihood
from agents.anomaly.multivariate import combine
from agents.anomaly.severity import assess, worst
from agents.anomaly.workflow import SYSTEM_ACTOR, TERMINAL, Rejected, Transition, apply_action, transition
from pipeline.runtime.snapshot import Fields, SnapshotError, floats_to_text
from schemas.anomaly import (
    Anomaly,
    AnomalyStatus,
    AnomalyStatusChange,
    BaselineBand,
    Direction,
    MetricName,
    MetricPoint,
    Rule,
    Season,
    Severity,
    Verdict,
    anomaly_id,
    band_id,
    status_change_id,
    to_datetime,
)
from schemas.commands import Action

__all__ = ["Step", "StreamDetector"]

_PCT_CAP = 1e6
DECISIVE = 1.5  # a point beyond this many thresholds opens an episode without waiting for N of M
_RECENT_BITS = 1000  # out-of-band flags remembered (rules confirm over at most this many points)
_FLAGS_KEPT = 64
_Z_KEPT = 16  # recent scores kept for the run test (rules confirm over at most this many of them)


@dataclass(frozen=True, slots=True)
class Step:
    """What one point produced. `opened` marks the point at which a new anomaly was raised."""

    band: BaselineBand | None
    anomaly: Anomaly | None  # opened or updated by this point
    changes: tuple[AnomalyStatusChange, ...]
    deviation_sigma: float | None
    out_of_band: bool
    opened: bool

    def records(self) -> list[BaselineBand | Anomaly | AnomalyStatusChange]:
        """Everything to publish for this point, in order: band, anomaly, status changes."""
        out: list[BaselineBand | Anomaly | AnomalyStatusChange] = []
        if self.band is not None:
            out.append(self.band)
        if self.anomaly is not None:
            out.append(self.anomaly)
        out.extend(self.changes)
        return out


def _pct(value: float, expected: float) -> float | None:
    if expected == 0:
        return None
    return max(-_PCT_CAP, min(_PCT_CAP, 100.0 * (value - expected) / abs(expected)))


@dataclass(slots=True)
class _Scored:
    """A point as the rule sees it: `est` in the scored space, `expected`/`sigma` in the metric's units."""

    ts: float
    value: float
    est: Estimate
    z: float
    pct: float | None
    hst_score: float | None
    expected: float
    sigma: float
    denominator: float | None
    capped: bool = False  # money: scored no further out than its charge count's exact tail


def _grow(episode: Anomaly, p: _Scored) -> Anomaly:
    """The episode's anomaly updated by one more out-of-band point (same id)."""
    verdict = combine(p.hst_score)
    if episode.verdict is Verdict.CORROBORATED:  # once corroborated, it stays so
        verdict = episode.verdict
    return episode.model_copy(
        update={
            "last_ts": to_datetime(p.ts),
            "value": p.value,
            "expected": p.expected,
            "sigma": p.sigma,
            "deviation_sigma": p.z,
            "deviation_pct": p.pct,
            "peak_sigma": max(episode.peak_sigma, abs(p.z)),
            "severity": worst(episode.severity, _severity(episode.metric, p)),
            "points": episode.points + 1,
            "hst_score": p.hst_score if p.hst_score is not None else episode.hst_score,
            "verdict": verdict,
        }
    )


def _severity(metric: MetricName, p: _Scored) -> Severity:
    return assess(metric, p.z, p.value, p.expected, p.denominator)


def _shrinks_weekly(kind: Kind) -> bool:
    """Whether a stream of this kind shrinks its weekly profile (`SlotProfile.shrunk`).

    The product's metrics do: their hourly samples carry count noise (a 4xx share of 10
    requests, a p95 of 8), and two such samples a slot made a weekly shape of noise that the
    automatic season choice then preferred (it fits the usual 0 of quiet hours): `eval
    scenarios --preset demo` precision 0.62 → 0.80, false alerts per clean tenant-day 0.018 →
    0.004. A series of no known kind (NAB's) keeps its weekly means as measured: shrinking them
    moved one detection in each of three NAB series, leave-one-category-out 68.5 → 65.4.
    """
    return kind is not Kind.LEVEL


def _decisive(rule: Rule, z: float) -> bool:
    """A point this far out confirms on its own: a burst that fits in one window is still seen."""
    return abs(z) >= DECISIVE * rule.threshold_sigma


def _passes(rule: Rule, z: float, pct: float | None) -> bool:
    if rule.direction is Direction.UP:
        side = z >= rule.threshold_sigma
    elif rule.direction is Direction.DOWN:
        side = z <= -rule.threshold_sigma
    else:
        side = abs(z) >= rule.threshold_sigma
    if not side:
        return False
    return pct is None or abs(pct) >= rule.min_pct


class StreamDetector:
    """Detector state of one tenant metric; `snapshot` / `restore` carry it through its table."""

    def __init__(self, tenant: str, metric: MetricName, rule: Rule, kind: Kind | None = None,
                 **baseline_kw: float) -> None:
        self.tenant = tenant
        self.metric = metric
        self.kind = KIND_OF[metric] if kind is None else kind
        baseline_kw.setdefault("sigma_floor", base_floor(self.kind))  # lets winsorising adapt off a flat 0
        baseline_kw.setdefault("shrink_weekly", _shrinks_weekly(self.kind))
        self.baseline = SeasonalBaseline(
            season=rule.season,
            history_days=rule.history_days,
            **baseline_kw,  # type: ignore[arg-type]  # numeric knobs, for the bench and NAB
        )
        self.n = 0  # points seen
        self.last_ts: float | None = None  # newest point time seen (the agent skips redeliveries)
        self.first_ts: float | None = None  # oldest point learnt (warm-up spans `rule.warmup_s` from it)
        self._recent = 0  # bit i set: the point i steps ago was out of band
        self._flag_ts: deque[tuple[int, float]] = deque(maxlen=_FLAGS_KEPT)
        self._z: deque[float] = deque(maxlen=_Z_KEPT)  # recent scores, each clipped at ±threshold
        self._likelihood: Likelihood | None = None  # only under a rule with likelihood_sigma > 0
        # Proportions: (failures k, requests n, rate p expected); money: (charges k, 1 window, charges expected).
        self._counts: deque[tuple[float, float, float]] = deque(maxlen=_Z_KEPT)
        self._charges: SeasonalBaseline | None = None  # money: charges per window, when points carry them
        self.quiet_until = 0  # no new episode before point number `quiet_until` ...
        self.quiet_until_ts = 0.0  # ... nor before this time
        self.episode: Anomaly | None = None  # open (or closed-by-hand, still out of band)
        self._in_band = 0

    def snapshot(self) -> dict[str, Any]:
        """Everything the detector knows, JSON-ready (see `restore`)."""
        return {
            "tenant": self.tenant, "metric": self.metric.value, "kind": self.kind.value,
            "baseline": self.baseline.snapshot(),
            "n": self.n, "last_ts": self.last_ts, "first_ts": self.first_ts, "recent": format(self._recent, "x"),
            "flags": [[n, ts] for n, ts in self._flag_ts], "quiet_until": self.quiet_until,
            "z": floats_to_text(self._z),
            "likelihood": None if self._likelihood is None else self._likelihood.snapshot(),
            "counts": floats_to_text(x for triple in self._counts for x in triple),
            "charges": None if self._charges is None else self._charges.snapshot(),
            "quiet_until_ts": self.quiet_until_ts, "in_band": self._in_band,
            "episode": None if self.episode is None else self.episode.model_dump(mode="json"),
        }

    @classmethod
    def restore(cls, data: object) -> StreamDetector:
        """The detector `snapshot` described; SnapshotError for anything else."""
        f = Fields(data, "detector")
        out = cls.__new__(cls)
        out.tenant = f.text("tenant", 64)
        try:
            out.metric = MetricName(f.text("metric", 64))
        except ValueError:
            raise f.fail("metric", "unknown metric") from None
        out.baseline = SeasonalBaseline.restore(f.raw("baseline"))
        out.n, out.quiet_until, out._in_band = f.integer("n"), f.integer("quiet_until"), f.integer("in_band")
        if "kind" in data:  # type: ignore[operator]  # Fields checked it is a mapping
            try:
                out.kind = Kind(f.text("kind", 16))
            except ValueError:
                raise f.fail("kind", "unknown kind") from None
        else:  # saved before kinds: its baseline learnt raw values
            out.kind = KIND_OF[out.metric]
            if not scored_raw(out.kind):  # ... so it starts again in the kind's space
                out.baseline = SeasonalBaseline(season=out.baseline.season, history_days=out.baseline.history_days,
                                                sigma_floor=base_floor(out.kind))
                out.n = 0
        out.baseline.shrink_weekly = _shrinks_weekly(out.kind)  # state saved before it: the kind decides
        out.last_ts = f.opt_number("last_ts")
        # Saved before the warm-up span was kept: its warm-up, if over, stays over.
        out.first_ts = f.opt_number("first_ts") if "first_ts" in data else (  # type: ignore[operator]
            None if out.last_ts is None else -1e12)
        out.quiet_until_ts = f.number("quiet_until_ts")
        recent = f.text("recent", _RECENT_BITS // 4 + 1)
        try:
            out._recent = int(recent, 16)
        except ValueError:
            raise f.fail("recent", "not a hex number") from None
        flags = f.items("flags", _FLAGS_KEPT)
        out._flag_ts = deque(maxlen=_FLAGS_KEPT)
        for i, item in enumerate(flags):
            pair = Fields({"n": item[0], "ts": item[1]} if isinstance(item, list) and len(item) == 2 else None,
                          f"detector.flags[{i}]")
            out._flag_ts.append((pair.integer("n"), pair.number("ts")))
        out._z = deque(f.floats("z", _Z_KEPT) if "z" in data else (), maxlen=_Z_KEPT)  # type: ignore[operator]
        flat = f.floats("counts", 3 * _Z_KEPT) if "counts" in data else ()  # type: ignore[operator]
        if len(flat) % 3 or any(not (math.isfinite(x) and x >= 0) for x in flat):
            raise f.fail("counts", "expected (failures, requests, rate) triples of finite numbers ≥ 0")
        out._counts = deque((tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)), maxlen=_Z_KEPT)  # type: ignore[misc]
        charges = f.raw("charges") if "charges" in data else None  # type: ignore[operator]
        out._charges = None if charges is None else SeasonalBaseline.restore(charges)
        if out._charges is not None:
            out._charges.shrink_weekly = _shrinks_weekly(Kind.COUNT)
        raw = f.raw("likelihood") if "likelihood" in data else None  # type: ignore[operator]
        out._likelihood = None if raw is None else Likelihood.restore(raw)
        episode = f.raw("episode")
        try:
            out.episode = None if episode is None else Anomaly.model_validate(episode)
        except ValidationError as exc:
            raise SnapshotError(f"detector.episode: {exc.error_count()} invalid field(s)") from None
        return out

    @classmethod
    def for_point(cls, point: MetricPoint, rule: Rule) -> StreamDetector:
        """A fresh detector for the stream `point` belongs to (key `point.key`)."""
        return cls(point.tenant, point.metric, rule)

    # -- points ------------------------------------------------------------------------------
    def observe_point(self, point: MetricPoint, rule: Rule, hst_score: float | None = None) -> Step:
        """`observe` for a metric-topic record; it must belong to this stream."""
        if (point.tenant, point.metric) != (self.tenant, self.metric):
            raise ValueError(f"{point.key} fed to the detector of {self.tenant}|{self.metric.value}")
        return self.observe(point.epoch, point.value, rule, hst_score, point.denominator)

    def seed(self, history: Iterable[tuple[float, float] | tuple[float, float, float | None]]) -> int:
        """Learn a stream's history, oldest first: (ts, value) or (ts, value, denominator) each
        (see `learn`); how many points were learnt."""
        return sum(self.learn(*point) for point in history)

    def learn(self, ts: float, value: float, denominator: float | None = None) -> bool:
        """Learn a point of the stream's history without scoring it (seeding a new stream).

        History replaces the warm-up: learnt points count towards `rule.warmup`, nothing is
        emitted, and points at or before the newest one learnt are ignored. True if learnt.
        """
        if self.last_ts is not None and ts <= self.last_ts:
            return False
        self._learn_charges(ts, denominator)
        self.baseline.update(ts, encode(self.kind, value), self._noise(ts, denominator))
        self.n += 1
        self.last_ts = ts
        if self.first_ts is None:
            self.first_ts = ts
        self._recent <<= 1
        self._recent &= (1 << _RECENT_BITS) - 1
        return True

    def _warm(self, rule: Rule, ts: float) -> bool:
        """Past the warm-up: `rule.warmup` points learnt, over at least `rule.warmup_s`."""
        return self.n >= rule.warmup and self.first_ts is not None and ts - self.first_ts >= rule.warmup_s

    def _run(self, rule: Rule, z: float) -> float | None:
        """The strongest run ending here: max over m = 2..M of |Σ last m scores| / √m, signed.

        M moderate points in a row add up (a shift is caught by its second point when both
        are clearly low). Each score is clipped at ±threshold first, so one huge point cannot
        carry the points after it. None unless the rule is `sustained`.
        """
        m_max = min(rule.confirm_m, _Z_KEPT, len(self._z) + 1)
        if not rule.sustained or m_max < 2:
            return None
        limit = rule.threshold_sigma
        total = max(-limit, min(limit, z))
        best = 0.0
        for m in range(2, m_max + 1):
            total += self._z[-(m - 1)]
            run = total / math.sqrt(m)
            if abs(run) > abs(best):
                best = run
        return best

    def _pooled(self, rule: Rule, value: float, denominator: float | None, expected: float) -> float | None:
        """A proportion's strongest pooled run: the exact binomial z of the last m = 2..M windows'
        counts together, against the rate expected at the run's first window (before the run
        could lift the baseline). Only while the pooled requests are few enough for the exact
        tail (`EXACT_MAX_N`): busier windows carry their own evidence. None otherwise.
        """
        m_max = min(rule.confirm_m, _Z_KEPT, len(self._counts) + 1)
        if self.kind is not Kind.PROPORTION or not denominator or m_max < 2:
            return None
        k, n = value * denominator, denominator
        best: float | None = None
        for m in range(2, m_max + 1):
            k_i, n_i, p_i = self._counts[-(m - 1)]
            k, n = k + k_i, n + n_i
            if n > EXACT_MAX_N:
                break
            z = binomial_z(k / n, p_i, n)
            if z is not None and (best is None or z > best):
                best = z
        return best

    def _pooled_charges(self, rule: Rule, charges: float | None,
                        expected: float | None) -> tuple[float | None, float | None]:
        """Money: the lowest exact Poisson z of the last m windows' charges together (m ≥ max(2, N)),
        against the charges expected in them as if the run's own windows had not been learnt,
        over m ≤ M and over every m; (None, None) without counts.

        m runs to the rule's M, and on over a run of windows without any charge (up to
        `_Z_KEPT`): a tenant of two charges a window whose revenue falls to nothing needs four
        empty windows to tell, and a run of M would never get there, since the baseline learns
        the empty windows as it goes. Only empty runs go on: for them the pooled z only grows
        with m, so the longer run is one test, not a search of ordinary quiet stretches for a
        low sum (letting runs of merely low windows go on doubled the false revenue alerts).
        The longer run only confirms: the z an anomaly reports (and its severity reads) is
        that of at most M windows, as the run test's is, so a revenue that stays at nothing
        is not made critical by the mere passing of time.

        Each window learnt moves the count baseline's level by (charges − expected)/L (L: the
        points its level averages); the pooled expectation adds that drag back, else a run of
        empty windows lowers what the next one is held to.
        """
        if self.kind is not Kind.MONEY or charges is None or not expected or self._charges is None:
            return None, None
        level_n = max(self._charges.level.n, 1)
        recent = [*self._counts, (charges, 1.0, expected)]
        empty = 0  # newest windows in a row without a charge
        for k_i, _, _ in reversed(recent):
            if k_i > 0:
                break
            empty += 1
        m_max = min(max(rule.confirm_m, empty), len(recent))
        best: float | None = None
        within: float | None = None  # the best of m ≤ M
        for m in range(max(2, rule.confirm_n), m_max + 1):
            k = lam = drag = 0.0
            for k_i, _, lam_i in recent[-m:]:
                k, lam = k + k_i, lam + max(lam_i + drag, 0.0)
                drag += (lam_i - k_i) / level_n
            z = poisson_low_z(k, lam)
            if z is not None and (best is None or z < best):
                best = z
            if m == rule.confirm_m:
                within = best
        return (best if m_max <= rule.confirm_m else within), best

    def _charge_estimate(self, ts: float) -> Estimate | None:
        """Money: the count baseline's estimate of the charges a window at `ts` holds (None until learnt)."""
        return None if self._charges is None else self._charges.estimate(ts)

    def _learn_charges(self, ts: float, charges: float | None, scored: tuple[Estimate | None] | None = None) -> None:
        if self.kind is not Kind.MONEY or charges is None:
            return
        if self._charges is None:
            base = self.baseline
            self._charges = SeasonalBaseline(season=base.season, history_days=base.history_days,
                                             sigma_floor=base_floor(Kind.COUNT),
                                             shrink_weekly=_shrinks_weekly(Kind.COUNT))
        self._charges.update(ts, charges, scored=scored)

    def _noise(self, ts: float, denominator: float | None, est: Estimate | None = None) -> float:
        """σ a point is learnt with at least: a ratio's count noise at its own denominator, else 0."""
        if self.kind not in (Kind.PROPORTION, Kind.CHANGE, Kind.LATENCY) or not denominator:
            return 0.0
        est = est or self.baseline.estimate(ts)
        return 0.0 if est is None else floor_sigma(self.kind, est.expected, 0.0, denominator)

    def _remember_counts(self, value: float, denominator: float | None, est: Estimate | None,
                         charges: float | None = None) -> None:
        """Keep a proportion's (failures, requests, expected rate) for `_pooled`, and money's
        (charges, 1, charges expected) for `_pooled_charges`."""
        if self.kind is Kind.MONEY:
            if denominator is not None and charges is not None:
                self._counts.append((denominator, 1.0, charges))
            else:
                self._counts.clear()  # a window without its count breaks the run
            return
        if self.kind is not Kind.PROPORTION:
            return
        if denominator and est is not None:
            self._counts.append((value * denominator, denominator, max(est.expected, 0.0)))
        else:
            self._counts.clear()  # a window without counts breaks the run

    def _floored(self, est: Estimate | None, denominator: float | None) -> Estimate | None:
        """The baseline's estimate `est` with σ no smaller than the metric kind's own noise."""
        if est is None:
            return None
        kind = self.kind
        sigma = floor_sigma(kind, est.expected, est.sigma, denominator)
        slow = est.bucket_sigma
        if slow is not None:
            slow = max(slow, floor_sigma(kind, est.expected, 0.0, denominator) / est.per_bucket ** 0.5)
        if sigma == est.sigma and slow == est.bucket_sigma:
            return est
        return replace(est, sigma=sigma, bucket_sigma=slow)

    def _scored(self, ts: float, value: float, est: Estimate, hst_score: float | None,
                denominator: float | None, *, charges: float | None = None) -> _Scored:
        kind, mu, sd = self.kind, est.expected, est.sigma
        expected = decode(kind, mu)
        sigma = value_sigma(kind, mu, sd)
        z = est.deviation(encode(kind, value))
        if kind is Kind.MONEY and denominator is not None and charges is not None:
            exact = poisson_low_z(denominator, charges)  # fewer charges than usual: how rare is that?
            if exact is not None and z < exact:
                return _Scored(ts, value, est, exact, _pct(value, expected), hst_score, expected, sigma,
                               denominator, capped=True)
        if kind is Kind.PROPORTION and denominator and sd == floor_sigma(kind, mu, 0.0, denominator):
            exact = binomial_z(value, mu, denominator)  # σ is the binomial floor: use the exact tail
            if exact is not None:
                z = exact
        return _Scored(ts, value, est, z, _pct(value, expected), hst_score, expected, sigma, denominator)

    def _judge(self, rule: Rule, scored: _Scored, x: float, charges: float | None) -> tuple[bool, bool]:
        """(out of band, confirmed at once by pooled counts) for a warm stream's scored point;
        `scored.z` becomes the z of whichever test caught it."""
        own, est = scored.z, scored.est
        out = _passes(rule, own, scored.pct)
        # A money point fills its hour-bucket alone: the slow test would score it again, uncapped.
        slow = None if scored.capped else est.slow_deviation(x)
        if not out and slow is not None and _passes(rule, slow, scored.pct):
            out, scored.z = True, slow  # the slow timescale caught it: report its z
        run = self._run(rule, own)
        if not out and run is not None and _passes(rule, run, scored.pct):
            out, scored.z = True, run  # so did the run of recent points
        pooled = self._pooled(rule, scored.value, scored.denominator, est.expected) if out else None
        decisive = pooled is not None and _decisive(rule, pooled)
        shown, pooled = self._pooled_charges(rule, scored.denominator, charges)
        if pooled is not None and _passes(rule, pooled, scored.pct):
            out = decisive = True  # N windows of missing charges, read together
            scored.z = scored.z if shown is None else min(scored.z, shown)
        return out, decisive

    def observe(self, ts: float, value: float, rule: Rule, hst_score: float | None = None,
                denominator: float | None = None) -> Step:
        """Score, learn and track one point (`ts` in epoch seconds; `denominator`: a proportion's n)."""
        raw = self.baseline.estimate(ts)
        est = self._floored(raw, denominator)
        x = encode(self.kind, value)
        counted = self.kind is Kind.MONEY and denominator is not None
        charge_est = self._charge_estimate(ts) if counted else None
        charges = None if charge_est is None else max(charge_est.expected, 0.0)
        scored = None
        out = pooled_decisive = False
        if est is not None:
            scored = self._scored(ts, value, est, hst_score, denominator, charges=charges)
            own = scored.z
            if self._warm(rule, ts) and rule.enabled:
                out, pooled_decisive = self._judge(rule, scored, x, charges)
            if rule.likelihood_sigma > 0:
                if self._likelihood is None:
                    self._likelihood = Likelihood()
                lik = self._likelihood.z(own)
                if out and lik is not None and lik < rule.likelihood_sigma:
                    out = False  # beyond the threshold, but not unusual for this stream lately
                self._likelihood.update(own)
            limit = rule.threshold_sigma
            self._z.append(max(-limit, min(limit, own)))
        self._remember_counts(value, denominator, est, charges)
        self._learn_charges(ts, denominator, (charge_est,) if counted else None)
        self.baseline.update(ts, x, self._noise(ts, denominator, est), scored=(raw,))
        self.n += 1
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        if self.first_ts is None:
            self.first_ts = ts
        self._recent = ((self._recent << 1) | int(out)) & ((1 << _RECENT_BITS) - 1)
        if out:
            self._flag_ts.append((self.n, ts))
        band = self._band(ts, est, rule) if est is not None else None
        if self.episode is not None:
            anomaly, changes = self._continue(self.episode, ts, rule, scored if out else None)
            return Step(band, anomaly, changes, None if scored is None else scored.z, out, False)
        quiet = self.n < self.quiet_until or ts < self.quiet_until_ts
        if scored is None or not out or quiet or not (
                self.confirmed(rule) or _decisive(rule, scored.z) or pooled_decisive):
            return Step(band, None, (), None if scored is None else scored.z, out, False)
        opened, change = self._open(scored, rule)
        self.episode, self._in_band = opened, 0
        return Step(band, opened, (change,), scored.z, out, True)

    def _band(self, ts: float, est: Estimate, rule: Rule) -> BaselineBand:
        half = rule.threshold_sigma * est.sigma
        kind = self.kind
        return BaselineBand(
            id=band_id(self.tenant, self.metric.value, ts),
            tenant=self.tenant,
            metric=self.metric,
            ts=to_datetime(ts),
            expected=decode(kind, est.expected),
            lower=decode(kind, est.expected - half),
            upper=decode(kind, est.expected + half),
            seasonal=est.season is not Season.NONE,
        )

    def confirmed(self, rule: Rule) -> bool:
        """Whether N of the last M points were out of band."""
        window = self._recent & ((1 << rule.confirm_m) - 1)
        return window.bit_count() >= rule.confirm_n

    def _continue(
        self, episode: Anomaly, ts: float, rule: Rule, out: _Scored | None
    ) -> tuple[Anomaly | None, tuple[AnomalyStatusChange, ...]]:
        """An open episode: grow it on an out-of-band point, resolve it after K in band."""
        if out is not None:
            self._in_band = 0
            if episode.status in TERMINAL:  # closed by hand: silent until back in band
                return None, ()
            self.episode = _grow(episode, out)
            return self.episode, ()
        self._in_band += 1
        if self._in_band < rule.resolve_after:
            return None, ()
        self.episode = None
        self.quiet_until = self.n + rule.cooldown
        self.quiet_until_ts = ts + rule.cooldown_s
        if episode.status in TERMINAL:
            return None, ()
        done = transition(episode, AnomalyStatus.RESOLVED, ts=ts, actor=SYSTEM_ACTOR, reason="back in band")
        if isinstance(done, Rejected):  # pragma: no cover - active/acknowledged → resolved is legal
            raise AssertionError(done.reason)
        return done.anomaly, (done.change,)

    def _open(self, p: _Scored, rule: Rule) -> tuple[Anomaly, AnomalyStatusChange]:
        first = self.n - rule.confirm_m
        flagged = [t for n, t in self._flag_ts if n > first]
        start = flagged[0] if flagged else p.ts
        anomaly = Anomaly(
            id=anomaly_id(self.tenant, self.metric.value, start),
            tenant=self.tenant,
            metric=self.metric,
            start_ts=to_datetime(start),
            detected_ts=to_datetime(p.ts),
            last_ts=to_datetime(p.ts),
            value=p.value,
            expected=p.expected,
            sigma=p.sigma,
            deviation_sigma=p.z,
            deviation_pct=p.pct,
            peak_sigma=abs(p.z),
            direction=Direction.UP if p.z > 0 else Direction.DOWN,
            severity=_severity(self.metric, p),
            status=AnomalyStatus.ACTIVE,
            points=max(1, len(flagged)),
            hst_score=p.hst_score,
            verdict=combine(p.hst_score),
            threshold_sigma=rule.threshold_sigma,
        )
        change = AnomalyStatusChange(
            id=status_change_id(anomaly.id, AnomalyStatus.ACTIVE.value, p.ts),
            anomaly_id=anomaly.id,
            tenant=self.tenant,
            metric=self.metric,
            ts=to_datetime(p.ts),
            from_status=None,
            to_status=AnomalyStatus.ACTIVE,
            actor=SYSTEM_ACTOR,
            reason=f"{rule.confirm_n} of {rule.confirm_m} points beyond {rule.threshold_sigma:g}σ",
        )
        return anomaly, change

    # -- commands ----------------------------------------------------------------------------
    def command(
        self, action: Action, target_id: str, *, ts: float, actor: str, reason: str = ""
    ) -> Transition | Rejected:
        """Apply an admin action to this stream's current anomaly."""
        episode = self.episode
        if episode is None or episode.id != target_id:
            return Rejected(f"anomaly {target_id} is not open on {self.tenant}|{self.metric.value}")
        result = apply_action(episode, action, ts=ts, actor=actor, reason=reason)
        if isinstance(result, Transition):
            self.episode = result.anomaly  # a closed episode stays, silent, until back in band
        return result
