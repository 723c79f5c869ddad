"""The publish SDK for upstream apps: validate, route, pack and send events with kafka-python.

    with Publisher("127.0.0.1:19092") as pub:
        pub.publish({"kind": "request", "event_id": "...", ...})

Each event is validated against `schemas` before anything is sent, under the contract the
workers apply to what they read (strict JSON, see `pipeline.runtime.codec`): a mapping is validated as
the JSON it will travel as, so `"status": "200"`, `True` for an integer, `200.0` for an integer
and epoch numbers for `ts` are refused here, not dead-lettered later. An invalid event raises
`InvalidEventError` and is not sent; nothing else escapes validation. Valid events are routed
to their topic and to the partition of their key (`tenant:ip` for requests, `tenant`
otherwise; murmur2 as Kafka's default partitioner, so single-event producers land on the same
partitions), and packed into JSON-array records of up to `batch_events` events: one Kafka
record carries many events, which is what lets a worker process tens of thousands of events a
second.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from pipeline.runtime.codec import STRICT, encode_batch, format_error, reason_text
from pipeline.runtime.topics import Topic, topic_name
from schemas.events import EVENT_ADAPTER, BillingEvent, ErrorEvent, RequestEvent, UsageEvent

__all__ = ["MAX_EVENT_BYTES", "InvalidEventError", "Publisher", "event_key", "event_topic", "partition_for",
           "validate_event_json"]

_TOPIC_OF: dict[type[BaseModel], Topic] = {
    RequestEvent: Topic.REQUESTS,
    BillingEvent: Topic.BILLING,
    ErrorEvent: Topic.ERRORS,
    UsageEvent: Topic.USAGE,
}


# One event's JSON text: far above any valid event (strings are bounded at 4 KiB), far below a record.
MAX_EVENT_BYTES = 1 << 20


class InvalidEventError(ValueError):
    """The event does not match its schema; the message lists each field's problem."""


def validate_event_json(text: bytes | str) -> BaseModel:
    """One event's JSON text as a validated model, or InvalidEventError saying why not.

    Exactly what a worker accepts from a record holding this one event (strict JSON).
    """
    if len(text) > MAX_EVENT_BYTES:
        raise InvalidEventError(f"event of {len(text)} bytes exceeds {MAX_EVENT_BYTES}")
    try:
        return EVENT_ADAPTER.validate_json(text, strict=STRICT)
    except ValidationError as exc:
        raise InvalidEventError(format_error(exc)) from None
    except Exception as exc:  # any other failure is the input's: say so, never crash the caller
        raise InvalidEventError(reason_text(f"could not decode: {exc!r}")) from None


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
        """`options`: client security settings (`kafka_config.client_kwargs(settings, "kafka-python")`)."""
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
        """The event as a validated model, or InvalidEventError saying what is wrong.

        A mapping is validated as the JSON it becomes on the wire (datetimes as RFC 3339 text).
        """
        if isinstance(event, BaseModel):
            if type(event) not in _TOPIC_OF:
                raise InvalidEventError(f"{type(event).__name__} is not an input event")
            return event
        try:
            text = to_json(event)
        except Exception as exc:  # lone surrogates, cycles, objects JSON has no form for
            raise InvalidEventError(reason_text(f"not representable as JSON: {exc}")) from None
        return validate_event_json(text)

    def publish(self, event: BaseModel | Mapping[str, Any]) -> None:
        """Validate `event` and queue it for its topic and partition (InvalidEventError: not sent)."""
        self._queue(self.validate(event))

    def publish_json(self, text: bytes | str) -> None:
        """Like `publish`, for one event's JSON text (a line of a JSON-lines file)."""
        self._queue(validate_event_json(text))

    def _queue(self, model: BaseModel) -> None:
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
