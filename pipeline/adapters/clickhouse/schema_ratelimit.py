"""ClickHouse tables of the rate limiter (migrations 100-199) and their topic → table sinks.

Every table is a ReplacingMergeTree ordered by a key ending in the record's deterministic
``id``, so redelivered records replace themselves; read with ``FINAL`` for exact counts.
"""

from __future__ import annotations

from pipeline.adapters.clickhouse.migrations import Migration
from pipeline.adapters.clickhouse.sinks import SinkSpec
from pipeline.runtime.topics import Topic
from schemas.ratelimit import Ban, Decision, LimitConfig, Rollup, Violation

__all__ = ["MIGRATIONS", "SINK_SPECS"]

_TS = "DateTime64(3, 'UTC')"



def _merged_quantile(q: float) -> str:
    """SQL for quantile q of a tenant-minute from its parts' summed latency histograms."""
    hist = "sumMap(latency_hist)"
    rank = f"{q} * arraySum(mapValues({hist}))"
    bucket = f"arrayFirst((b, c) -> c >= {rank}, mapKeys({hist}), arrayCumSum(mapValues({hist})))"
    return f"least(if({bucket} = 0, 0.1, 0.1 * pow(1.05, {bucket})), latency_max_ms)"  # the alias: max of the parts


MIGRATIONS: list[Migration] = [
    Migration(100, "rate limiting: limits history, violations, bans, decisions, rollups", (
        f"""CREATE TABLE IF NOT EXISTS rl_limits (
            id String, tenant_id LowCardinality(String), ts {_TS}, actor String,
            action LowCardinality(String), reason String, enabled Bool, shadow Bool,
            per_minute Nullable(UInt64), per_hour Nullable(UInt64), per_day Nullable(UInt64),
            whitelist_size UInt32, blacklist_size UInt32, policy_json String
        ) ENGINE = ReplacingMergeTree ORDER BY (tenant_id, ts, id)""",
        f"""CREATE TABLE IF NOT EXISTS rl_violations (
            id String, tenant_id LowCardinality(String), ip String, limit_name LowCardinality(String),
            limit UInt64, count UInt64, window_s Float64, shadow Bool, ts {_TS}
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (tenant_id, ts, id)""",
        f"""CREATE TABLE IF NOT EXISTS rl_bans (
            id String, tenant_id LowCardinality(String), ip String, action LowCardinality(String),
            reason LowCardinality(String), level UInt8, start {_TS}, end {_TS}, shadow Bool, ts {_TS}
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (tenant_id, ts, id)""",
        f"""CREATE TABLE IF NOT EXISTS rl_decisions (
            id String, tenant_id LowCardinality(String), ip String, state LowCardinality(String),
            reason LowCardinality(String), limit Nullable(UInt64), remaining Nullable(UInt64),
            reset_ts Nullable({_TS}), retry_after_s Nullable(Float64), shadow Bool, ts {_TS}
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (tenant_id, ts, id)""",
        f"""CREATE TABLE IF NOT EXISTS rl_rollups (
            id String, tenant_id LowCardinality(String), minute {_TS}, requests UInt64, errors UInt64,
            client_errors UInt64, blocked UInt64, distinct_ips UInt64, latency_sum_ms Float64,
            latency_count UInt64, latency_max_ms Float64, latency_p50_ms Float64, latency_p95_ms Float64
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(minute) ORDER BY (tenant_id, minute, id)""",
    )),
    Migration(101, "rollups in parts (one per requests partition) and their per-tenant sum", (
        "ALTER TABLE rl_rollups ADD COLUMN IF NOT EXISTS part UInt16 DEFAULT 0 AFTER minute",
        "ALTER TABLE rl_rollups ADD COLUMN IF NOT EXISTS latency_hist Map(UInt16, UInt64)",
        # A tenant-minute is the sum of its parts; percentiles come from the merged histogram
        # (bucket b ≥ 1 holds latencies up to 0.1 ms · 1.05^b, see agents/ratelimit/rollup.py).
        f"""CREATE VIEW IF NOT EXISTS rl_rollups_tenant AS
        SELECT tenant_id, minute, count() AS parts, sum(requests) AS requests, sum(errors) AS errors,
            sum(client_errors) AS client_errors, sum(blocked) AS blocked, sum(distinct_ips) AS distinct_ips,
            sum(latency_sum_ms) AS latency_sum_ms, sum(latency_count) AS latency_count,
            max(latency_max_ms) AS latency_max_ms,
            {_merged_quantile(0.5)} AS latency_p50_ms,
            {_merged_quantile(0.95)} AS latency_p95_ms
        FROM rl_rollups FINAL GROUP BY tenant_id, minute""",  # noqa: S608 - SQL from constants only
    )),
    Migration(102, "rollups complete per tenant-minute (combined across partitions), late parts apart", (
        # One row per tenant-minute now (`parts`: how many requests partitions it adds up); a part
        # that arrived after its minute closed is a row of its own with `late` set. The view is
        # all a minute's traffic: the complete row, late rows (also counted apart: a metric
        # window already closed counts them as late) and rows written before this migration
        # (parts: parts = 1, late = false).
        "ALTER TABLE rl_rollups ADD COLUMN IF NOT EXISTS parts UInt16 DEFAULT 1 AFTER part",
        "ALTER TABLE rl_rollups ADD COLUMN IF NOT EXISTS late Bool DEFAULT false AFTER parts",
        f"""CREATE OR REPLACE VIEW rl_rollups_tenant AS
        SELECT tenant_id, minute, sum(parts) AS parts, sum(requests) AS requests, sum(errors) AS errors,
            sum(client_errors) AS client_errors, sum(blocked) AS blocked, sum(distinct_ips) AS distinct_ips,
            sum(latency_sum_ms) AS latency_sum_ms, sum(latency_count) AS latency_count,
            max(latency_max_ms) AS latency_max_ms,
            {_merged_quantile(0.5)} AS latency_p50_ms,
            {_merged_quantile(0.95)} AS latency_p95_ms,
            countIf(late) AS late_parts, sumIf(rl_rollups.requests, late) AS late_requests
        FROM rl_rollups FINAL GROUP BY tenant_id, minute""",  # noqa: S608 - SQL from constants only
    )),
]


def _columns(model: type) -> tuple[str, ...]:
    return tuple(model.model_fields)  # type: ignore[attr-defined]  # pydantic models


SINK_SPECS: list[SinkSpec] = [
    SinkSpec(Topic.LIMITS, LimitConfig, "rl_limits", _columns(LimitConfig)),
    SinkSpec(Topic.VIOLATIONS, Violation, "rl_violations", _columns(Violation)),
    SinkSpec(Topic.BANS, Ban, "rl_bans", _columns(Ban)),
    SinkSpec(Topic.DECISIONS, Decision, "rl_decisions", _columns(Decision)),
    SinkSpec(Topic.ROLLUPS, Rollup, "rl_rollups", _columns(Rollup)),
]
