"""The owner's history for the demo: metric points of the days before a preset, in ClickHouse.

A real owner comes to tenantwatch with weeks of traffic behind them; a demo that starts from
nothing spends its first days warming up (the tiny preset's two days were all warm-up, so it
showed no anomaly). `tenantwatch demo` therefore first loads a *backfill*: the metric points
(hourly volume, error rate, revenue, users, …) of the same tenants' ordinary traffic over the
`days` before the preset (`generator.history_of`: same seed, same population, no incidents),
derived exactly as the anomaly agent derives them (`anomaly_eval.metric_points`), written to
`metric_points`. When the worker meets each stream it seeds from that history through the
writer's read API, so the live days are judged from seeded baselines.

Only metric points are backfilled, never events: the request, billing and usage tables (and
so the dashboards' traffic panels) hold the live days only. Run in a child process
(`python -m pipeline.devstack.backfill`, the config as JSON on stdin) before the writer
starts: chDB admits one process per data path, and the child's ends with it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence

from pipeline.devstack.generator import GeneratorConfig, history_of
from schemas.anomaly import MetricPoint

__all__ = ["history_points", "load_history", "main"]

_BATCH = 20_000
_COLUMNS = ("tenant", "metric", "ts", "value", "denominator")


def history_points(config: GeneratorConfig, days: int) -> Iterator[MetricPoint]:
    """The metric points of the `days` before `config.start` (ordinary traffic, no incidents)."""
    from pipeline.devstack.anomaly_eval import metric_points

    return metric_points(history_of(config, days))


def load_history(dsn: str, config: GeneratorConfig, days: int) -> int:
    """Write the backfill into `metric_points` at `dsn` (migrating first); how many points."""
    from pipeline.adapters.clickhouse.client import connect
    from pipeline.adapters.clickhouse.migrations import migrate
    from pipeline.adapters.clickhouse.sinks import ClickHouseSink

    client = connect(dsn)
    migrate(client)
    sink = ClickHouseSink(client)
    batch: list[MetricPoint] = []
    total = 0
    for point in history_points(config, days):
        batch.append(point)
        if len(batch) >= _BATCH:
            sink.insert("metric_points", _COLUMNS, batch)
            total, batch = total + len(batch), []
    sink.insert("metric_points", _COLUMNS, batch)
    return total + len(batch)


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m pipeline.devstack.backfill", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, required=True, help="days of history before the config's start")
    args = parser.parse_args(argv)
    config = GeneratorConfig.model_validate_json(sys.stdin.read())
    print(load_history(Settings().dsn, config, args.days))
    return 0


if __name__ == "__main__":
    sys.exit(main())
