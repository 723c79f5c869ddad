"""Versioned, idempotent ClickHouse schema migrations.

Each migration is a list of statements that are safe to run twice (IF NOT EXISTS); its version
is recorded in `schema_migrations` once all statements succeeded. Tables that receive results
are ReplacingMergeTree ordered by a key that ends in the record's deterministic id, so a
redelivered record replaces itself: read with FINAL (or argMax) for exact counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MIGRATIONS", "Migration", "all_migrations", "applied_versions", "migrate"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


_TS = "DateTime64(3, 'UTC')"

MIGRATIONS: list[Migration] = [
    Migration(1, "input events, dead letters, audit log", (
        f"""CREATE TABLE IF NOT EXISTS requests (
            event_id String, ts {_TS}, tenant_id LowCardinality(String), ip String,
            method LowCardinality(String), path String, status UInt16, latency_ms Float32,
            bytes UInt64, user_id Nullable(String)
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (tenant_id, ts, event_id)""",
        f"""CREATE TABLE IF NOT EXISTS billing (
            event_id String, ts {_TS}, tenant_id LowCardinality(String), type LowCardinality(String),
            plan Nullable(String), trial_days Nullable(UInt16), contact_email Nullable(String),
            amount_minor Nullable(Int64), currency Nullable(String)
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (tenant_id, ts, event_id)""",
        f"""CREATE TABLE IF NOT EXISTS errors (
            event_id String, ts {_TS}, tenant_id LowCardinality(String), service LowCardinality(String),
            error_type String, message String, severity LowCardinality(String), path Nullable(String)
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (tenant_id, ts, event_id)""",
        f"""CREATE TABLE IF NOT EXISTS usage (
            event_id String, ts {_TS}, tenant_id LowCardinality(String), storage_bytes UInt64,
            active_users UInt32, api_calls Nullable(UInt64)
        ) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (tenant_id, ts, event_id)""",
        f"""CREATE TABLE IF NOT EXISTS dead_letters (
            id String, ts {_TS}, stage LowCardinality(String), source_topic LowCardinality(String),
            partition UInt32, offset Int64, batch_index Int32, error String, payload_b64 String,
            payload_size UInt64, truncated Bool
        ) ENGINE = ReplacingMergeTree ORDER BY (source_topic, id)""",
        f"""CREATE TABLE IF NOT EXISTS audit_log (
            id String, nonce String, ts {_TS}, command_ts Nullable({_TS}), actor String, action LowCardinality(String),
            tenant_id LowCardinality(String), params_json String, outcome LowCardinality(String),
            reason String
        ) ENGINE = ReplacingMergeTree ORDER BY (tenant_id, id)""",
    )),
]


def all_migrations() -> list[Migration]:
    """The foundation's migrations plus each capability's, from `pipeline/adapters/clickhouse/schema_*.py`.

    Versions: foundation 1-99, rate limiting 100-199, anomalies 200-299, trials and
    notifications 300-399, dashboards and operations 400-499.
    """
    import importlib
    import pkgutil

    import pipeline.adapters.clickhouse as package

    found = list(MIGRATIONS)
    for m in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if m.name.startswith("schema_"):
            found.extend(importlib.import_module(f"{package.__name__}.{m.name}").MIGRATIONS)
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise RuntimeError(f"duplicate migration versions: {sorted(versions)}")
    return found


def applied_versions(client: Any) -> set[int]:
    client.command(
        f"CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at {_TS})"
        " ENGINE = ReplacingMergeTree ORDER BY version"
    )
    return {row[0] for row in client.query("SELECT version FROM schema_migrations FINAL").result_rows}


def migrate(client: Any, migrations: list[Migration] | None = None) -> list[int]:
    """Apply every migration not yet recorded, in version order; return the versions applied."""
    done = applied_versions(client)
    applied = []
    for m in sorted(migrations if migrations is not None else all_migrations(), key=lambda m: m.version):
        if m.version in done:
            continue
        for stmt in m.statements:
            client.command(stmt)
        client.command(
            "INSERT INTO schema_migrations VALUES ({v:UInt32}, {n:String}, now64(3))",
            parameters={"v": m.version, "n": m.name},
        )
        applied.append(m.version)
    return applied
