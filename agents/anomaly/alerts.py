"""Which anomalies page a human, and the `anomaly_alert` notification that does it (pure).

A notification goes out the first time an episode reaches `high`, and again if it later
reaches `critical`; its id is `stable_id("anomaly-alert", anomaly id, severity)`, so a
redelivered metric point cannot mail twice.

The alert carries the numbers (value, expected, band, σ, %, severity) as template variables
and, when the stream has history, a `ChartSeries`: the last `CHART_MAX_POINTS` scored points
with their baseline bands, kept per stream in a `SeriesRing`, from which the notifier draws
the mail's inline chart.
"""

from __future__ import annotations

from array import array
from typing import Any, Final

from pipeline.runtime.snapshot import Fields, floats_to_text
from schemas.anomaly import Anomaly, BaselineBand, Severity, to_datetime
from schemas.notify import CHART_MAX_POINTS, ChartPoint, ChartSeries, Notification
from schemas.notify import Severity as NoticeSeverity
from schemas.results import stable_id

__all__ = ["ALERT_AT", "SeriesRing", "alert_for", "describe", "should_alert"]

ALERT_AT: Final = (Severity.HIGH, Severity.CRITICAL)
_NOTICE: Final = {Severity.HIGH: NoticeSeverity.WARNING, Severity.CRITICAL: NoticeSeverity.CRITICAL}


def should_alert(anomaly: Anomaly, before: Severity | None) -> bool:
    """Whether this version of the episode crossed into an alerting severity (`before`: previous)."""
    if anomaly.severity not in ALERT_AT:
        return False
    if before is None or before not in ALERT_AT:
        return True
    return anomaly.severity is Severity.CRITICAL and before is not Severity.CRITICAL


def _num(x: float) -> str:
    return f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"


def describe(a: Anomaly) -> str:
    pct = "" if a.deviation_pct is None else f" ({a.deviation_pct:+.0f} %)"
    side = "above" if a.deviation_sigma > 0 else "below"
    return (
        f"{a.metric.value} of {a.tenant} is {abs(a.deviation_sigma):.1f}σ {side} its baseline{pct} "
        f"over {a.points} point(s) since {a.start_ts.isoformat()}; verdict {a.verdict.value}. "
        f"Anomaly id {a.id}."
    )


_FIELDS: Final = 5  # ts, value, expected, low, high


class SeriesRing:
    """The last `size` scored points of one stream, as (ts, value, expected, low, high).

    Flat doubles in an `array`: 120 points are under 5 kB in memory and in its table (a deque
    of tuples would take five times that, per stream). Points at or before the newest one are
    ignored, so a redelivered point is not drawn twice.
    """

    def __init__(self, size: int = CHART_MAX_POINTS) -> None:
        if not 2 <= size <= CHART_MAX_POINTS:
            raise ValueError(f"size must be within 2..{CHART_MAX_POINTS}")
        self.size = size
        self._data = array("d")

    def __len__(self) -> int:
        return len(self._data) // _FIELDS

    @property
    def last_ts(self) -> float | None:
        return self._data[-_FIELDS] if self._data else None

    def add(self, ts: float, value: float, band: BaselineBand) -> SeriesRing:
        """Keep one point with the band it was scored against; drop the oldest beyond `size`."""
        last = self.last_ts
        if last is not None and ts <= last:
            return self
        self._data.extend((ts, value, band.expected, band.lower, band.upper))
        extra = len(self._data) - self.size * _FIELDS
        if extra > 0:
            del self._data[:extra]
        return self

    def snapshot(self) -> dict[str, Any]:
        return {"size": self.size, "data": floats_to_text(self._data)}

    @classmethod
    def restore(cls, data: object) -> SeriesRing:
        """The ring `snapshot` described; SnapshotError (a ValueError) for anything else."""
        f = Fields(data, "ring")
        out = cls(f.integer("size", 2, CHART_MAX_POINTS))
        values = f.floats("data", out.size * _FIELDS)
        if len(values) % _FIELDS:
            raise f.fail("data", f"not whole points of {_FIELDS} values")
        out._data = values
        return out

    def points(self) -> list[tuple[float, float, float, float, float]]:
        d = self._data
        return [(d[i], d[i + 1], d[i + 2], d[i + 3], d[i + 4]) for i in range(0, len(d), _FIELDS)]

    def chart(self, anomaly: Anomaly) -> ChartSeries | None:
        """The series for `anomaly`'s alert, or None while fewer than two points are kept."""
        if len(self) < 2:
            return None
        points = tuple(ChartPoint(ts=to_datetime(t), value=v, expected=e, low=lo, high=hi)
                       for t, v, e, lo, hi in self.points())
        # The episode may have begun before the kept window: then mark its oldest point.
        marker = max(anomaly.start_ts, points[0].ts)
        return ChartSeries(title=f"{anomaly.metric.value} of {anomaly.tenant}", marker=marker, points=points)


def alert_for(anomaly: Anomaly, recipient: str, chart: ChartSeries | None = None) -> Notification:
    """The `anomaly_alert` mail for a high or critical anomaly (with its chart series, if any)."""
    half = anomaly.threshold_sigma * anomaly.sigma
    pct = "" if anomaly.deviation_pct is None else f" ({anomaly.deviation_pct:+.0f} %)"
    return Notification(
        id=stable_id("anomaly-alert", anomaly.id, anomaly.severity.value),
        kind="anomaly_alert",
        recipient=recipient,
        tenant_id=anomaly.tenant,
        severity=_NOTICE.get(anomaly.severity, NoticeSeverity.WARNING),
        ts=anomaly.detected_ts,
        variables={
            "tenant_id": anomaly.tenant,
            "metric": anomaly.metric.value,
            "value": _num(anomaly.value),
            "baseline": f"{_num(anomaly.expected)} ± {_num(anomaly.sigma)}",
            "expected": _num(anomaly.expected),
            "band": f"{_num(anomaly.expected - half)} to {_num(anomaly.expected + half)}",
            "deviation": f"{anomaly.deviation_sigma:+.1f}σ{pct}",
            "severity": anomaly.severity.value,
            "detected_at": anomaly.detected_ts.isoformat(),
            "description": describe(anomaly),
            "anomaly_id": anomaly.id,
        },
        chart=chart,
    )
