"""ClickHouse tables of the anomaly capability (migrations 200-299) and their topic sinks.

- `anomalies`: one row per version of an episode (same id as it grows or changes status);
  `ReplacingMergeTree(version)` keeps the latest, where `version` = 4·points + status rank
  rises with every re-emission (points only grow, statuses only move forward), so even a
  redelivered older version cannot win. Read with FINAL.
- `anomaly_status`: the status history (every transition, with actor and reason).
- `baselines`: the band each point was scored against (Grafana draws expected ± threshold σ).
- `anomaly_rules`: rule history from `rule.set` commands.
- `metric_points`: the derived metric stream; a point's identity is (tenant, metric, ts). New
  anomaly streams seed from it (with each ratio's denominator, migration 201).
"""

from __future__ import annotations

from pipeline.adapters.clickhouse.migrations import Migration
from pipeline.adapters.clickhouse.sinks import SinkSpec
from pipeline.runtime.topics import Topic
from schemas.anomaly import Anomaly, AnomalyStatusChange, BaselineBand, MetricPoint, RuleChange

__all__ = ["MIGRATIONS", "SINK_SPECS"]

_TS = "DateTime64(3, 'UTC')"
_LC = "LowCardinality(String)"

MIGRATIONS: list[Migration] = [
    Migration(200, "anomalies, status history, baselines, rules, metric points", (
        f"""CREATE TABLE IF NOT EXISTS anomalies (
            id String, tenant {_LC}, metric {_LC}, start_ts {_TS}, detected_ts {_TS}, last_ts {_TS},
            value Float64, expected Float64, sigma Float64, deviation_sigma Float64,
            deviation_pct Nullable(Float64), peak_sigma Float64, direction {_LC}, severity {_LC},
            status {_LC}, points UInt32, hst_score Nullable(Float64), verdict {_LC}, threshold_sigma Float64,
            version UInt64 DEFAULT 4 * points
                + indexOf(['active', 'acknowledged', 'resolved', 'false_positive'], status)
        ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(start_ts) ORDER BY (tenant, id)""",
        f"""CREATE TABLE IF NOT EXISTS anomaly_status (
            id String, anomaly_id String, tenant {_LC}, metric {_LC}, ts {_TS},
            from_status Nullable(String), to_status {_LC}, actor String, reason String
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (tenant, anomaly_id, id)""",
        f"""CREATE TABLE IF NOT EXISTS baselines (
            id String, tenant {_LC}, metric {_LC}, ts {_TS}, expected Float64, lower Float64, upper Float64,
            seasonal Bool
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (tenant, metric, ts, id)""",
        f"""CREATE TABLE IF NOT EXISTS anomaly_rules (
            id String, tenant {_LC}, metric {_LC}, ts {_TS}, actor String, reason String, is_default Bool,
            direction {_LC}, threshold_sigma Float64, warmup UInt32, enabled Bool, rule_json String
        ) ENGINE = ReplacingMergeTree ORDER BY (tenant, metric, id)""",
        f"""CREATE TABLE IF NOT EXISTS metric_points (
            tenant {_LC}, metric {_LC}, ts {_TS}, value Float64
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (tenant, metric, ts)""",
    )),
    # A ratio's denominator (requests; the churn signal's earlier users): a stream seeded from
    # history learns each point with the noise of its own denominator, as it does live.
    Migration(201, "metric points keep their denominator", (
        "ALTER TABLE metric_points ADD COLUMN IF NOT EXISTS denominator Nullable(Float64)",
    )),
]

SINK_SPECS: list[SinkSpec] = [
    SinkSpec(Topic.ANOMALIES, Anomaly, "anomalies",
             ("id", "tenant", "metric", "start_ts", "detected_ts", "last_ts", "value", "expected", "sigma",
              "deviation_sigma", "deviation_pct", "peak_sigma", "direction", "severity", "status", "points",
              "hst_score", "verdict", "threshold_sigma")),
    SinkSpec(Topic.ANOMALY_STATUS, AnomalyStatusChange, "anomaly_status",
             ("id", "anomaly_id", "tenant", "metric", "ts", "from_status", "to_status", "actor", "reason")),
    SinkSpec(Topic.BASELINES, BaselineBand, "baselines",
             ("id", "tenant", "metric", "ts", "expected", "lower", "upper", "seasonal")),
    SinkSpec(Topic.ANOMALY_RULES, RuleChange, "anomaly_rules",
             ("id", "tenant", "metric", "ts", "actor", "reason", "is_default", "direction", "threshold_sigma",
              "warmup", "enabled", "rule_json")),
    SinkSpec(Topic.METRICS, MetricPoint, "metric_points", ("tenant", "metric", "ts", "value", "denominator")),
]
