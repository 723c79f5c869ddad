"""The publish SDK for upstream apps: validate, route, pack and send events with kafka-python.

    with Publisher("127.0.0.1:19092") as pub:
        pub.publish({"kind": "request", "event_id": "...", ...})

Each event is validated against `schemas` before anything is sent; an invalid one raises
`InvalidEventError` and is not sent. Valid events are routed to their topic and to the
partition of their key (`tenant:ip` for requests, `tenant` otherwise; murmur2 as Kafka's
default partitioner, so single-event producers land on the same partitions), and packed into
JSON-array records of up to `batch_events` events: one Kafka record carries many events, which
is what lets a worker process tens of thousands of events a second.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError

from pipeline.codec import encode_batch, format_error
from pipeline.topics import Topic, topic_name
from schemas.events import EVENT_ADAPTER, BillingEvent, ErrorEvent, RequestEvent, UsageEvent

__all__ = ["InvalidEventError", "Publisher", "event_key", "event_topic", "partition_for"]

_TOPIC_OF: dict[type[BaseModel], Topic] = {
    RequestEvent: Topic.REQUESTS,
    BillingEvent: Topic.BILLING,
    ErrorEvent: Topic.ERRORS,
    UsageEvent: Topic.USAGE,
}


class InvalidEventError(ValueError):
    """The event does not match its schema; the message lists each field's problem."""


def event_topic(event: BaseModel) -> Topic:
    return _TOPIC_OF[type(event)]


def event_key(event: BaseModel) -> str:
    if isinstance(event, RequestEvent):
        return f"{event.tenant_id}:{event.ip}"
    return str(event.tenant_id)  # type: ignore[attr-defined]


@lru_cache(maxsize=1 << 16)
def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) picks for `key`."""
    from kafka.partitioner.default import murmur2

    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class Publisher:
    """Validates and sends events; `flush()` (or leaving the `with` block) delivers them."""

    def __init__(
        self,
        bootstrap: str,
        *,
        prefix: str = "tw",
        batch_events: int = 1000,
        linger_ms: int = 10,
        producer: Any = None,
        options: Mapping[str, Any] | None = None,
    ):
        """`options`: client security settings (`pipeline.kafka_config.client_kwargs(settings, "kafka-python")`)."""
        from kafka import KafkaProducer

        self.prefix = prefix
        self.batch_events = batch_events
        self.producer = producer or KafkaProducer(
            bootstrap_servers=bootstrap,
            linger_ms=linger_ms,
            acks="all",
            compression_type=None,
            batch_size=1 << 20,
            max_request_size=8 << 20,
            **(options or {}),
        )
        self._partitions: dict[str, int] = {}
        self._pending: dict[tuple[str, int], list[BaseModel]] = defaultdict(list)
        self._futures: list[Any] = []
        self.sent_events = 0

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            parts = self.producer.partitions_for(topic)
            if not parts:
                raise RuntimeError(f"topic {topic} does not exist; run `tenantwatch topics create`")
            count = self._partitions[topic] = len(parts)
        return count

    @staticmethod
    def validate(event: BaseModel | Mapping[str, Any]) -> BaseModel:
        """The event as a validated model, or InvalidEventError saying what is wrong."""
        if isinstance(event, BaseModel):
            if type(event) not in _TOPIC_OF:
                raise InvalidEventError(f"{type(event).__name__} is not an input event")
            return event
        try:
            return EVENT_ADAPTER.validate_python(event)
        except ValidationError as exc:
            raise InvalidEventError(format_error(exc)) from None

    def publish(self, event: BaseModel | Mapping[str, Any]) -> None:
        model = self.validate(event)
        topic = topic_name(self.prefix, event_topic(model))
        slot = (topic, partition_for(event_key(model), self._partition_count(topic)))
        pending = self._pending[slot]
        pending.append(model)
        if len(pending) >= self.batch_events:
            self._send(slot)

    def publish_many(self, events: Iterable[BaseModel | Mapping[str, Any]]) -> int:
        n = 0
        for event in events:
            self.publish(event)
            n += 1
        return n

    def _send(self, slot: tuple[str, int]) -> None:
        models = self._pending.pop(slot)
        topic, partition = slot
        self._futures.append(self.producer.send(topic, value=encode_batch(models), partition=partition))
        self.sent_events += len(models)
        if len(self._futures) > 1000:
            self._check_futures()

    def _check_futures(self) -> None:
        futures, self._futures = self._futures, []
        for fut in futures:
            fut.get(timeout=60)  # raises the broker's error, if any

    def flush(self) -> None:
        for slot in list(self._pending):
            self._send(slot)
        self.producer.flush()
        self._check_futures()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.producer.close()
