"""Metric derivation: a tenant's rollups, billing, usage and error events → MetricPoints (pure).

One `TenantMetrics` per tenant lives in the agent's table (key `tenant`). Events are added to
event-time windows (one per metric, at the metric's resolution); `close(watermark)` emits a
point for every window that ended at or before the watermark, in time order, and forgets it.

| metric               | from       | resolution | value of a window                              |
|----------------------|------------|------------|------------------------------------------------|
| request_volume       | rollups    | 1 h        | Σ requests (0 when no rollup arrived)          |
| error_rate           | rollups    | 1 h        | Σ errors (5xx) / Σ requests; none if no traffic |
| client_error_ratio   | rollups    | 1 h        | Σ 4xx / Σ requests; none if no traffic          |
| latency_p95          | rollups    | 1 h        | request-weighted median of the minute p95s (*) |
| top_ip_share         | rollups    | 1 h        | Σ top-IP requests / Σ requests (see below)     |
| revenue              | billing    | 6 h        | Σ charges − Σ refunds, minor units (0 if none) (†) |
| cancellations        | billing    | 1 day      | subscription + trial cancellations (0 if none) |
| active_users         | usage      | 1 h        | latest snapshot of the window                  |
| active_user_decline  | usage      | 1 h        | 1 − users / fewer of a day and a week before   |
| storage_bytes        | usage      | 1 h        | latest snapshot of the window                  |
| error_events         | errors     | 1 h        | ErrorEvents (0 when none)                      |

The churn signal compares each hour with the same hour a day and a week before, and takes the
fewer of those users: against the trailing day's mean it swung with the daily and weekly cycle
(every Saturday and Monday morning "declined" or recovered by 30–60 %), and those swings, not
churn, were what it alerted on. A loss must now show against both: a weekend is no loss
against the weekend before, and a past usage spike, whose echo falls a day or a week later,
is no loss against the other. It starts once a week of active-user points has been seen.

Why these resolutions: the baselines bucket by the hour with a daily profile; a tenant's
charges arrive a few per hour, so revenue needs 6 h windows for a drop to stand out of
Poisson noise, and cancellations are rare enough that only daily counts mean anything.

A rollup is added once: one seen again (same id) while its window is open is counted in
`duplicates` and skipped, so an upstream redelivery cannot inflate a window.

Ratios carry their denominator (Σ requests; for the churn signal, the fewer active users of a
day and a week before) in `MetricPoint.denominator`: the detector judges them against binomial
(Poisson) noise, which depends on it. (*) So does the latency p95, with the requests behind it:
a p95 of few requests is a noisy one. (†) Revenue carries the number of successful charges
behind it: a window of a small tenant holds a handful, and how rare a quiet window is depends
on how many charges it usually holds, not on the sum alone.

Counts are 0 for an empty window, but only once the tenant's first event of that source was
seen (a worker without the rate limiter emits no request volume, rather than zeros). Ratios
and snapshots skip empty windows. Events older than an already-closed window are *late*:
counted in `late` and dropped (the watermark already trails by the allowed lateness).

`top_ip_share` needs the requests of the busiest few IPs per minute, which `Rollup` does not
carry yet: it is emitted only for rollups that have a `top_ip_requests` attribute.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pipeline.runtime.snapshot import Fields, SnapshotError, floats_to_text
from schemas._base import TENANT_PATTERN
from schemas.anomaly import MetricName, MetricPoint, to_datetime
from schemas.events import BillingEvent, BillingType, ErrorEvent, UsageEvent

__all__ = ["DECLINE_WINDOW", "MAX_CATCH_UP", "RESOLUTIONS", "SOURCES", "SOURCE_OF", "TenantMetrics"]

_M = MetricName
_HOUR: Final = 3600.0
RESOLUTIONS: Final[Mapping[MetricName, float]] = {
    _M.REQUEST_VOLUME: _HOUR, _M.ERROR_RATE: _HOUR, _M.CLIENT_ERROR_RATIO: _HOUR, _M.LATENCY_P95: _HOUR,
    _M.TOP_IP_SHARE: _HOUR, _M.REVENUE: 6 * _HOUR, _M.CANCELLATIONS: 24 * _HOUR, _M.ACTIVE_USERS: _HOUR,
    _M.ACTIVE_USER_DECLINE: _HOUR, _M.STORAGE_BYTES: _HOUR, _M.ERROR_EVENTS: _HOUR,
}
SOURCES: Final[Mapping[str, tuple[MetricName, ...]]] = {
    "rollups": (_M.REQUEST_VOLUME, _M.ERROR_RATE, _M.CLIENT_ERROR_RATIO, _M.LATENCY_P95, _M.TOP_IP_SHARE),
    "billing": (_M.REVENUE, _M.CANCELLATIONS),
    "usage": (_M.ACTIVE_USERS, _M.STORAGE_BYTES),
    "errors": (_M.ERROR_EVENTS,),
}
SOURCE_OF: Final[Mapping[MetricName, str]] = {
    **{m: src for src, metrics in SOURCES.items() for m in metrics}, _M.ACTIVE_USER_DECLINE: "usage",
}
_COUNTS: Final = frozenset({_M.REQUEST_VOLUME, _M.REVENUE, _M.CANCELLATIONS, _M.ERROR_EVENTS})
_CANCELS: Final = frozenset({BillingType.SUBSCRIPTION_CANCELED, BillingType.TRIAL_CANCELED})
DECLINE_WINDOW: Final = 168  # active-user points back to the one the churn signal compares with (a week)
_DAY_POINTS: Final = 24
MAX_CATCH_UP: Final = 24 * 14  # at most this many windows per metric closed in one call
_MAX_SAMPLES: Final = 100_000  # latency samples a restored window may hold
_MAX_OPEN: Final = 10_000  # open windows per metric a restored state may hold
_TENANT: Final = re.compile(TENANT_PATTERN)
_MAX_SEEN: Final = 100_000  # rollups of open windows a restored state may remember


@dataclass(slots=True)
class _Acc:
    """What one window of one metric accumulated."""

    total: float = 0.0  # sum, or ratio numerator
    den: float = 0.0  # ratio denominator
    last_ts: float = -math.inf  # snapshots: the latest wins
    last: float | None = None
    samples: list[tuple[float, float]] = field(default_factory=list)  # (value, weight)

    def snapshot(self, ts: float, value: float) -> None:
        if ts >= self.last_ts:
            self.last_ts, self.last = ts, value

    def state(self) -> list[Any]:
        flat = [x for pair in self.samples for x in pair]
        return [self.total, self.den, None if math.isinf(self.last_ts) else self.last_ts, self.last,
                floats_to_text(flat)]

    @classmethod
    def from_state(cls, data: object, what: str) -> _Acc:
        if not isinstance(data, list) or len(data) != 5:
            raise SnapshotError(f"{what}: expected [total, den, last_ts, last, samples]")
        f = Fields(dict(zip(("total", "den", "last_ts", "last", "samples"), data, strict=True)), what)
        flat = f.floats("samples", 2 * _MAX_SAMPLES)
        if len(flat) % 2:
            raise f.fail("samples", "an odd number of values")
        last_ts = f.opt_number("last_ts")
        return cls(f.number("total"), f.number("den"), -math.inf if last_ts is None else last_ts,
                   f.opt_number("last"), [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)])


def _weighted_median(samples: list[tuple[float, float]]) -> float | None:
    total = sum(w for _, w in samples)
    if total <= 0:
        return None
    acc = 0.0
    for value, weight in sorted(samples):
        acc += weight
        if acc >= total / 2:
            return value
    return sorted(samples)[-1][0]  # pragma: no cover - float rounding only


class TenantMetrics:
    """Open metric windows of one tenant; `snapshot` / `restore` carry it through its table."""

    def __init__(self, tenant: str, resolutions: Mapping[MetricName, float] = RESOLUTIONS) -> None:
        self.tenant = tenant
        self.resolutions = dict(resolutions)
        self.windows: dict[MetricName, dict[float, _Acc]] = {m: {} for m in self.resolutions}
        self.next_start: dict[MetricName, float] = {}  # first window not yet closed, per metric
        self.recent_users: deque[float] = deque(maxlen=DECLINE_WINDOW)
        self.late = 0
        self.duplicates = 0
        # (minute, id) of the rollups in open windows: a rollup sent again (at-least-once, after a
        # restart upstream) is not added twice.
        self.rollups_seen: set[tuple[float, str]] = set()

    # -- state -------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything the tenant's windows hold, JSON-ready (see `restore`)."""
        return {
            "tenant": self.tenant, "late": self.late, "recent_users": floats_to_text(self.recent_users),
            "metrics": {m.value: {"res": self.resolutions[m],
                                  "open": [[start, acc.state()] for start, acc in self.windows[m].items()]}
                        for m in self.resolutions},
            "next": [[m.value, start] for m, start in self.next_start.items()],  # in order: it orders points
            "duplicates": self.duplicates,
            "seen": sorted([minute, rid] for minute, rid in self.rollups_seen),
        }

    @classmethod
    def restore(cls, data: object) -> TenantMetrics:
        """The windows `snapshot` described; SnapshotError for anything else."""
        f = Fields(data, "metrics")
        metrics = f.mapping("metrics", len(MetricName))
        resolutions: dict[MetricName, float] = {}
        parts: dict[MetricName, Fields] = {}
        for name, part in metrics.items():
            try:
                metric = MetricName(name)
            except ValueError:
                raise f.fail("metrics", f"unknown metric {name!r:.40}") from None
            parts[metric] = Fields(part, f"metrics.{name}")
            resolutions[metric] = parts[metric].number("res", 1.0, 366 * 86_400.0)
        if resolutions.keys() != RESOLUTIONS.keys():
            raise f.fail("metrics", "every metric must be present")
        tenant = f.text("tenant", 64)
        if not _TENANT.match(tenant):
            raise f.fail("tenant", "not a tenant id")
        out = cls(tenant, resolutions)
        out.late = f.integer("late")
        out.recent_users.extend(f.floats("recent_users", DECLINE_WINDOW))
        for i, item in enumerate(f.items("next", len(MetricName))):
            what = f"metrics.next[{i}]"
            if not isinstance(item, list) or len(item) != 2 or item[0] not in metrics:
                raise SnapshotError(f"{what}: expected [metric, start]")
            out.next_start[MetricName(item[0])] = Fields({"start": item[1]}, what).number("start", -1e12, 1e12)
        for metric, part in parts.items():
            for i, item in enumerate(part.items("open", _MAX_OPEN)):
                what = f"metrics.{metric.value}.open[{i}]"
                if not isinstance(item, list) or len(item) != 2:
                    raise SnapshotError(f"{what}: expected [start, window]")
                when = Fields({"start": item[0]}, what).number("start", -1e12, 1e12)
                out.windows[metric][when] = _Acc.from_state(item[1], what)
        if "seen" in data:  # type: ignore[operator]  # Fields checked it is a mapping
            out.duplicates = f.integer("duplicates")
            for i, item in enumerate(f.items("seen", _MAX_SEEN)):
                what = f"metrics.seen[{i}]"
                if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], str) or len(item[1]) > 256:
                    raise SnapshotError(f"{what}: expected [minute, rollup id]")
                out.rollups_seen.add((Fields({"m": item[0]}, what).number("m", -1e12, 1e12), item[1]))
        return out

    # -- adding ------------------------------------------------------------------------------
    def _acc(self, metric: MetricName, ts: float) -> _Acc | None:
        """The open window of `metric` holding `ts`, or None when that window already closed."""
        res = self.resolutions[metric]
        start = math.floor(ts / res) * res
        first = self.next_start.setdefault(metric, start)
        if start < first:
            self.late += 1
            return None
        return self.windows[metric].setdefault(start, _Acc())

    def add_rollup(self, rollup: Any) -> None:
        """A closed minute of the tenant's requests (`schemas.ratelimit.Rollup`)."""
        ts = rollup.minute.timestamp()
        seen = self.rollups_seen
        key = (ts, rollup.id)
        if key in seen:
            self.duplicates += 1
            return
        # Looked up once: a missing attribute costs a pydantic __getattr__ and an exception.
        fields = getattr(type(rollup), "model_fields", None)
        top = getattr(rollup, "top_ip_requests", None) if fields is None or "top_ip_requests" in fields else None
        for metric in SOURCES["rollups"]:
            if metric is _M.TOP_IP_SHARE and top is None:
                continue
            acc = self._acc(metric, ts)
            if acc is None:
                continue
            seen.add(key)
            if metric is _M.REQUEST_VOLUME:
                acc.total += rollup.requests
            elif metric is _M.LATENCY_P95:
                if rollup.latency_count:
                    acc.samples.append((float(rollup.latency_p95_ms), float(rollup.latency_count)))
            else:
                num = {_M.ERROR_RATE: rollup.errors, _M.CLIENT_ERROR_RATIO: rollup.client_errors}.get(metric, top)
                acc.total += float(num or 0)
                acc.den += rollup.requests

    def add_billing(self, event: BillingEvent) -> None:
        ts = event.ts.timestamp()
        for metric in SOURCES["billing"]:  # both windows open from the first billing event on
            acc = self._acc(metric, ts)
            if acc is None:
                continue
            if metric is _M.REVENUE and event.amount_minor is not None:
                if event.type is BillingType.CHARGE_SUCCEEDED:
                    acc.total += event.amount_minor
                    acc.den += 1
                elif event.type is BillingType.REFUND:
                    acc.total -= event.amount_minor
            elif metric is _M.CANCELLATIONS and event.type in _CANCELS:
                acc.total += 1

    def add_usage(self, event: UsageEvent) -> None:
        ts = event.ts.timestamp()
        for metric, value in ((_M.ACTIVE_USERS, event.active_users), (_M.STORAGE_BYTES, event.storage_bytes)):
            acc = self._acc(metric, ts)
            if acc is not None:
                acc.snapshot(ts, float(value))

    def add_error(self, event: ErrorEvent) -> None:
        acc = self._acc(_M.ERROR_EVENTS, event.ts.timestamp())
        if acc is not None:
            acc.total += 1

    def add(self, events: Iterable[Any]) -> None:
        """Add events of any source kind (dispatch on type)."""
        for e in events:
            if isinstance(e, BillingEvent):
                self.add_billing(e)
            elif isinstance(e, UsageEvent):
                self.add_usage(e)
            elif isinstance(e, ErrorEvent):
                self.add_error(e)
            else:
                self.add_rollup(e)

    # -- closing -----------------------------------------------------------------------------
    def due(self, source: str | None = None) -> float:
        """The earliest watermark at which `close(…, source)` has something to emit (inf: nothing open)."""
        ends = [start + self.resolutions[m] for m, start in self.next_start.items()
                if source is None or SOURCE_OF[m] == source]
        return min(ends, default=math.inf)

    def close(self, watermark: float, source: str | None = None) -> list[MetricPoint]:
        """Points of every window (of `source`'s metrics, or all) that ended by `watermark`, oldest first.

        Each source's windows should close on that source's own watermark: topics are consumed
        at their own pace, so one source's event time says nothing about another's arrivals.
        """
        out: list[MetricPoint] = []
        for metric in [m for m in self.next_start if source is None or SOURCE_OF[m] == source]:
            res = self.resolutions[metric]
            start = self.next_start[metric]
            windows = self.windows[metric]
            closed = 0
            while start + res <= watermark and closed < MAX_CATCH_UP:
                out.extend(self._points(metric, start, windows.pop(start, None)))
                start += res
                closed += 1
            if closed == MAX_CATCH_UP:  # a long silence: skip ahead instead of emitting zeros forever
                start = max(start, math.floor(watermark / res) * res)
                for old in [s for s in windows if s < start]:
                    del windows[old]
            self.next_start[metric] = start
        if (seen := self.rollups_seen) and (
                starts := [self.next_start[m] for m in SOURCES["rollups"] if m in self.next_start]):
            self.rollups_seen = {k for k in seen if k[0] >= min(starts)}  # only open windows' rollups
        out.sort(key=lambda p: p.ts)
        return out

    def _points(self, metric: MetricName, start: float, acc: _Acc | None) -> list[MetricPoint]:
        value: float | None
        den = None
        if metric in _COUNTS:
            value = acc.total if acc is not None else 0.0
            if metric is _M.REVENUE:
                den = acc.den if acc is not None else 0.0  # successful charges
        elif acc is None:
            return []
        elif metric is _M.LATENCY_P95:
            value = _weighted_median(acc.samples)
            den = sum(w for _, w in acc.samples) or None  # the requests behind it
        elif metric in (_M.ACTIVE_USERS, _M.STORAGE_BYTES):
            value = acc.last
        else:
            value, den = (acc.total / acc.den, acc.den) if acc.den > 0 else (None, None)
        if value is None:
            return []
        points = [self._point(metric, start, value, den)]
        if metric is _M.ACTIVE_USERS:
            users = self.recent_users
            if len(users) == users.maxlen:
                before = min(users[0], users[-_DAY_POINTS])  # the same hour a week and a day ago
                decline = 1.0 - value / before if before > 0 else 0.0
                points.append(self._point(_M.ACTIVE_USER_DECLINE, start, decline, before))
            users.append(value)
        return points

    def _point(self, metric: MetricName, start: float, value: float, den: float | None = None) -> MetricPoint:
        return MetricPoint(tenant=self.tenant, metric=metric, ts=to_datetime(start), value=value, denominator=den)
