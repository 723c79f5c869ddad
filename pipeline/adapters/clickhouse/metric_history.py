"""The owner's metric history in ClickHouse, read to seed a new anomaly stream (no warm-up).

A worker that meets a (tenant, metric) stream it holds no detector for (a new worker on a
fresh changelog, or a new tenant whose history was imported) asks for that stream's points of
the last `days` before the point at hand from `metric_points` and learns them
(`StreamDetector.seed`) before scoring anything. It reads through the console's named query
`metric_history` (`pipeline.console.queries`), so the same read serves both set-ups:

- a ClickHouse server: the worker connects itself (`DirectReader`);
- the embedded engine (chDB): only the writer may open the data path, so the worker asks the
  writer's loopback read API (`ReadApiReader`, announced in `<data_dir>/status/read-api.json`).
  No writer serving yet: the stream warms up live.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from schemas.anomaly import MetricName

__all__ = ["MAX_POINTS", "MetricHistory"]

MAX_POINTS = 100_000  # 30 days of minutes would be 43,200: a bound, not an expected size


class _Reader(Protocol):
    def read(self, name: str, params: dict[str, Any]) -> dict[str, list[Any]]: ...


class MetricHistory:
    """`points(tenant, metric, before)`: (epoch seconds, value, denominator) of the last `days`, oldest first."""

    def __init__(self, reader: _Reader, days: float = 14.0) -> None:
        self.reader = reader
        self.days = days

    def points(self, tenant: str, metric: MetricName, before: float) -> list[tuple[float, float, float | None]]:
        result = self.reader.read("metric_history", {
            "tenant": tenant, "metric": metric.value, "limit": MAX_POINTS,  # windows start on whole minutes
            "since_min": max(0, math.floor((before - self.days * 86_400.0) / 60)),
            "until_min": max(0, math.floor(before / 60)),
        })
        return [(float(t), float(v), None if d is None else float(d)) for t, v, d in result["rows"]]
