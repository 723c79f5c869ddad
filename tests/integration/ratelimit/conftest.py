"""Fixtures and helpers of the rate-limit integration tests: one worker + writer per module."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.admin import build_command, send_command
from pipeline.sdk import Publisher, partition_for
from pipeline.settings import Settings
from schemas.commands import Action, AdminCommand
from schemas.results import AuditRecord
from tests.conftest import WorkerProcess, WriterThread

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # minute-aligned event time


def make_settings(kafka: str, session_dir: Path) -> Settings:
    """Like the `settings_factory` fixture, usable in module-scoped fixtures."""
    prefix = f"rl{uuid.uuid4().hex[:8]}"
    return Settings(broker=kafka, topic_prefix=prefix, app_id=f"tw-{prefix}", data_dir=session_dir / prefix,
                    clickhouse_dsn=f"chdb://{session_dir / 'clickhouse'}", partitions=4)


def start_writer(settings: Settings, client: Any) -> WriterThread:
    from pipeline.adapters.clickhouse.sinks import ClickHouseSink
    from pipeline.adapters.clickhouse.writer import ClickHouseWriter

    writer = ClickHouseWriter(bootstrap=settings.broker, prefix=settings.topic_prefix, sink=ClickHouseSink(client),
                              group_id=f"{settings.app_id}-writer", flush_s=0.2)
    return WriterThread(writer).__enter__()


@pytest.fixture(scope="module")
def stack(kafka: str, session_dir: Path, chdb_client: Any) -> Iterator[Settings]:
    """A rate-limit worker and a ClickHouse writer on fresh topics, shared by a module's tests."""
    settings = make_settings(kafka, session_dir)
    ensure_topics(settings)
    worker = WorkerProcess(settings, "ratelimit").start()
    writer = start_writer(settings, chdb_client)
    try:
        yield settings
    finally:
        writer.__exit__(None, None, None)
        worker.stop()


def command(settings: Settings, action: Action, tenant: str, **params: Any) -> AdminCommand:
    return build_command(settings, action=action, tenant=tenant, params=params, actor="tester")


def admin(settings: Settings, action: Action, tenant: str, **params: Any) -> AuditRecord:
    """Send a signed command and return its audit record (the first one waits for the worker)."""
    record = send_command(settings, command(settings, action, tenant, **params), wait_s=180)
    assert record is not None, f"no audit record for {action.value} within 180s"
    return record


def requests(tenant: str, ip: str, n: int, start: datetime = T0, *, step_s: float = 1.0,
             status: int = 200) -> list[dict[str, Any]]:
    return [
        {"kind": "request", "event_id": f"{tenant}-{ip}-{start.timestamp() + i * step_s:.3f}",
         "ts": (start + timedelta(seconds=i * step_s)).isoformat(), "tenant_id": tenant, "ip": ip,
         "method": "GET", "path": "/api/items", "status": status, "latency_ms": 10.0 + i % 5}
        for i in range(n)
    ]


def ticks(tenant: str, at: datetime, partitions: int = 4) -> list[dict[str, Any]]:
    """One request on every partition at `at`: moves every partition's watermark there."""
    out: list[dict[str, Any]] = []
    found: set[int] = set()
    for i in range(1, 250):
        ip = f"192.0.2.{i}"
        p = partition_for(f"{tenant}:{ip}", partitions)
        if p not in found:
            found.add(p)
            out += requests(tenant, ip, 1, start=at)
        if len(found) == partitions:
            return out
    raise AssertionError("no IP for some partition")


def publish(settings: Settings, events: list[dict[str, Any]]) -> None:
    with Publisher(settings.broker, prefix=settings.topic_prefix, batch_events=100) as pub:
        pub.publish_many(events)
        pub.flush()


def rows(client: Any, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query(sql, parameters=params).result_rows]


def tenant_name(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:6]}"


Waiter = Callable[..., Any]
