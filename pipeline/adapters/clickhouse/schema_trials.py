"""ClickHouse tables of trial automation and notifications (migrations 300-399) and their sinks.

`trial_states` keeps every state change (`(trial_id, version)` orders them): the newest
version of each trial is its current state, which is what conversion stats read.
"""

from __future__ import annotations

from pipeline.adapters.clickhouse.migrations import Migration
from pipeline.adapters.clickhouse.sinks import SinkSpec
from pipeline.runtime.topics import Topic
from schemas.notify import Delivery, Notification
from schemas.trials import TenantCommand, TrialState

__all__ = ["MIGRATIONS", "SINK_SPECS"]

_TS = "DateTime64(3, 'UTC')"

MIGRATIONS: list[Migration] = [
    Migration(300, "trial states, tenant commands, notifications, deliveries", (
        f"""CREATE TABLE IF NOT EXISTS trial_states (
            id String, trial_id String, tenant_id LowCardinality(String), plan LowCardinality(String),
            status LowCardinality(String), previous Nullable(String), version UInt32,
            started_at {_TS}, ends_at {_TS}, converted_at Nullable({_TS}), ts {_TS}, reason String
        ) ENGINE = ReplacingMergeTree ORDER BY (tenant_id, trial_id, id)""",
        f"""CREATE TABLE IF NOT EXISTS tenant_commands (
            id String, tenant_id LowCardinality(String), action LowCardinality(String),
            source LowCardinality(String), reason String, ts {_TS}, trial_id Nullable(String)
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (tenant_id, id)""",
        f"""CREATE TABLE IF NOT EXISTS notifications (
            id String, kind LowCardinality(String), channel LowCardinality(String), recipient String,
            tenant_id LowCardinality(String), variables String, severity LowCardinality(String), ts {_TS}
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (tenant_id, id)""",
        f"""CREATE TABLE IF NOT EXISTS deliveries (
            id String, notification_id String, status LowCardinality(String), attempts UInt32,
            error String, code Nullable(UInt16), message_id String, ts {_TS}
        ) ENGINE = ReplacingMergeTree ORDER BY (notification_id, id)""",
    )),
]

SINK_SPECS: list[SinkSpec] = [
    SinkSpec(Topic.TRIAL_STATE, TrialState, "trial_states",
             ("id", "trial_id", "tenant_id", "plan", "status", "previous", "version", "started_at", "ends_at",
              "converted_at", "ts", "reason")),
    SinkSpec(Topic.TENANT_COMMANDS, TenantCommand, "tenant_commands",
             ("id", "tenant_id", "action", "source", "reason", "ts", "trial_id")),
    SinkSpec(Topic.NOTIFICATIONS, Notification, "notifications",
             ("id", "kind", "channel", "recipient", "tenant_id", "variables", "severity", "ts")),
    SinkSpec(Topic.DELIVERIES, Delivery, "deliveries",
             ("id", "notification_id", "status", "attempts", "error", "code", "message_id", "ts")),
]
