"""Signing admin commands and sending them, waiting for their audit verdict (the CLI prints it:
`pipeline.cli._common.send_admin`)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from pipeline.adapters.kafka_config import client_kwargs
from pipeline.runtime.codec import Codec, encode_one
from pipeline.runtime.topics import Topic, topic_name
from pipeline.settings import Settings
from schemas.commands import Action, AdminCommand, ParamValue, sign
from schemas.results import AuditRecord

__all__ = ["build_command", "send_command"]


def build_command(
    settings: Settings,
    *,
    action: Action, tenant: str, params: dict[str, ParamValue], actor: str, reason: str = "",
    now: datetime | None = None,
) -> AdminCommand:
    """A signed command (raises pydantic's ValidationError with the reason if a field is invalid)."""
    fields: dict[str, Any] = {
        "nonce": secrets.token_urlsafe(18), "ts": (now or datetime.now(UTC)).isoformat(), "actor": actor,
        "action": action.value, "tenant_id": tenant, "params": params, "reason": reason,
    }
    return sign(settings.signing_key_bytes, fields)


def send_command(settings: Settings, command: AdminCommand, wait_s: float = 30.0) -> AuditRecord | None:
    """Publish `command`; return its audit record, or None if no worker answered within `wait_s`."""
    from kafka import KafkaProducer
    from kafka.structs import TopicPartition

    from pipeline.adapters.kafka_clients import SafeConsumer

    audit_topic = topic_name(settings.topic_prefix, Topic.AUDIT)
    kafka = client_kwargs(settings, "kafka-python")
    consumer = SafeConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False, **kafka)
    try:
        parts = [TopicPartition(audit_topic, p) for p in sorted(consumer.partitions_for_topic(audit_topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_end(*parts)
        for tp in parts:
            consumer.position(tp)  # resolve "end" now, before the command can be answered
        producer = KafkaProducer(bootstrap_servers=settings.broker, acks="all", **kafka)
        try:
            producer.send(topic_name(settings.topic_prefix, Topic.COMMANDS), key=command.tenant_id.encode(),
                          value=encode_one(command)).get(timeout=30)
        finally:
            producer.close()  # a failed send must not leave its sender thread running
        if wait_s <= 0:
            return None
        codec: Codec[AuditRecord] = Codec(AuditRecord)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=250).values():
                for msg in messages:
                    for record in codec.decode(msg.value)[0]:
                        if record.nonce == command.nonce:
                            return record
        return None
    finally:
        consumer.close()
