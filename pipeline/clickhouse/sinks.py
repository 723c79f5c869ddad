"""Where rows go: the `Sink` interface, the ClickHouse sink, a flaky test double, and the map
from each result topic to its model and table."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from operator import attrgetter
from typing import Any, Protocol

from pydantic import BaseModel

from pipeline.topics import Topic
from schemas.events import BillingEvent, ErrorEvent, RequestEvent, UsageEvent
from schemas.results import AuditRecord, DeadLetter

__all__ = ["SINKS", "ClickHouseSink", "FlakySink", "MemorySink", "Sink", "SinkSpec", "register_sink"]


class Sink(Protocol):
    """Inserts one batch of rows, column-oriented. Raises on failure; the caller retries."""

    def insert(self, table: str, column_names: Sequence[str], columns: list[list[Any]]) -> None: ...


class ClickHouseSink:
    """A Sink over a clickhouse-connect client (chDB or server)."""

    def __init__(self, client: Any):
        self.client = client

    def insert(self, table: str, column_names: Sequence[str], columns: list[list[Any]]) -> None:
        self.client.insert(table, columns, column_names=list(column_names), column_oriented=True)


@dataclass
class MemorySink:
    """A Sink that keeps rows in memory: for tests and dry runs."""

    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    def insert(self, table: str, column_names: Sequence[str], columns: list[list[Any]]) -> None:
        self.tables.setdefault(table, []).extend(zip(*columns, strict=True))


class FlakySink:
    """Wraps a Sink and fails every insert while `failing` is set: an outage you can switch."""

    def __init__(self, inner: Sink):
        self.inner = inner
        self.failing = threading.Event()
        self.failures = 0

    def insert(self, table: str, column_names: Sequence[str], columns: list[list[Any]]) -> None:
        if self.failing.is_set():
            self.failures += 1
            raise ConnectionError("simulated ClickHouse outage")
        self.inner.insert(table, column_names, columns)


def _cell(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return value


@dataclass(frozen=True)
class SinkSpec:
    """Records of `model` on `topic` become rows of `table` with these columns (attribute names)."""

    topic: Topic
    model: type[BaseModel]
    table: str
    columns: tuple[str, ...]
    convert: Callable[[Any], Any] = _cell

    def to_columns(self, records: Sequence[BaseModel]) -> list[list[Any]]:
        get = attrgetter(*self.columns)
        rows = [get(r) for r in records]
        if len(self.columns) == 1:
            rows = [(r,) for r in rows]
        cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in self.columns]
        conv = self.convert
        for i, col in enumerate(cols):
            sample = next((v for v in col if v is not None), None)
            if isinstance(sample, Enum | dict | list):
                cols[i] = [conv(v) for v in col]
        return cols


SINKS: dict[Topic, SinkSpec] = {}


def register_sink(spec: SinkSpec) -> SinkSpec:
    """Add a topic → table mapping (capabilities register theirs on import)."""
    SINKS[spec.topic] = spec
    return spec


for _spec in (
    SinkSpec(Topic.REQUESTS, RequestEvent, "requests",
             ("event_id", "ts", "tenant_id", "ip", "method", "path", "status", "latency_ms", "bytes", "user_id")),
    SinkSpec(Topic.BILLING, BillingEvent, "billing",
             ("event_id", "ts", "tenant_id", "type", "plan", "trial_days", "contact_email", "amount_minor",
              "currency")),
    SinkSpec(Topic.ERRORS, ErrorEvent, "errors",
             ("event_id", "ts", "tenant_id", "service", "error_type", "message", "severity", "path")),
    SinkSpec(Topic.USAGE, UsageEvent, "usage",
             ("event_id", "ts", "tenant_id", "storage_bytes", "active_users", "api_calls")),
    SinkSpec(Topic.DLQ, DeadLetter, "dead_letters",
             ("id", "ts", "stage", "source_topic", "partition", "offset", "batch_index", "error", "payload_b64",
              "payload_size", "truncated")),
    SinkSpec(Topic.AUDIT, AuditRecord, "audit_log",
             ("id", "ts", "command_ts", "actor", "action", "tenant_id", "params_json", "outcome", "reason")),
):
    register_sink(_spec)
