"""ClickHouse tables of the rate limiter (migrations 100-199) and their topic → table sinks.

Every table is a ReplacingMergeTree ordered by a key ending in the record's deterministic
``id``, so redelivered records replace themselves; read with ``FINAL`` for exact counts.
"""

from __future__ import annotations

from pipeline.clickhouse.migrations import Migration
from pipeline.clickhouse.sinks import SinkSpec
from pipeline.topics import Topic
from schemas.ratelimit import Ban, Decision, LimitConfig, Rollup, Violation

__all__ = ["MIGRATIONS", "SINK_SPECS"]

_TS = "DateTime64(3, 'UTC')"

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
