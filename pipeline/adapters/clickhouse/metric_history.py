"""The owner's metric history in ClickHouse, read to seed a new anomaly stream (no warm-up).

A worker that meets a (tenant, metric) stream it holds no detector for (a new worker on a
fresh changelog, or a new tenant whose history was imported) asks for that stream's points of
the last `days` before the point at hand from `metric_points` and learns them
(`StreamDetector.seed`) before scoring anything. With chDB only the writer may open the data
path, so workers seed only from a ClickHouse server (`TW_CLICKHOUSE_DSN=http://…`); with chDB
they warm up live as before.
"""

from __future__ import annotations

from typing import Any

from schemas.anomaly import MetricName, to_datetime

__all__ = ["MetricHistory"]

_SQL = (
    "SELECT toFloat64(toUnixTimestamp64Milli(ts)) / 1000 AS t, value FROM metric_points FINAL"
    " WHERE tenant = {tenant:String} AND metric = {metric:String}"
    " AND ts >= {since:DateTime64(3, 'UTC')} AND ts < {until:DateTime64(3, 'UTC')} ORDER BY ts"
    " LIMIT {limit:UInt32}"
)
_MAX_POINTS = 100_000  # 30 days of minutes would be 43,200: a bound, not an expected size


class MetricHistory:
    """`points(tenant, metric, before)`: (epoch seconds, value) of the last `days`, oldest first."""

    def __init__(self, client: Any, days: float = 14.0) -> None:
        self.client = client
        self.days = days

    def points(self, tenant: str, metric: MetricName, before: float) -> list[tuple[float, float]]:
        result = self.client.query(_SQL, parameters={
            "tenant": tenant, "metric": metric.value, "since": to_datetime(before - self.days * 86_400.0),
            "until": to_datetime(before), "limit": _MAX_POINTS,
        })
        return [(float(t), float(v)) for t, v in result.result_rows]
