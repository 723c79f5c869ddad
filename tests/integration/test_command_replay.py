"""A signed command applies at most once with two workers, however its bytes are re-sent and routed."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.admin import build_command, send_command
from pipeline.runtime.codec import encode_one
from pipeline.runtime.topics import Topic, topic_name
from pipeline.sdk import partition_for
from schemas.commands import Action
from schemas.results import AuditRecord
from tests.conftest import wait_for
from tests.integration.anomaly.anomaly_helpers import read_topic
from tests.integration.ratelimit.test_multiworker import group_members

pytestmark = pytest.mark.integration

REPLAYS = 20


def test_replayed_bytes_under_other_keys_and_partitions_are_refused_by_both_workers(
    settings_factory: Any, worker_factory: Any,
) -> None:
    """20 replays of one accepted command's bytes, keyed and partitioned every which way: 0 accepted, all audited."""
    settings = settings_factory()
    ensure_topics(settings)
    worker_factory(settings, capabilities="anomaly")
    worker_factory(settings, capabilities="anomaly")
    tenant = f"replay-{uuid.uuid4().hex[:6]}"
    wait_for(lambda: group_members(settings) == 2, timeout=120, what="a stable group of two workers")
    warm = build_command(settings, action=Action.RULE_SET, tenant=tenant, params={"metric": "revenue"}, actor="ops")
    assert send_command(settings, warm, wait_s=120) is not None, "the workers answer commands"
    wait_for(lambda: group_members(settings) == 2, timeout=120, what="the group still of two workers")

    from kafka import KafkaProducer

    cmd = build_command(settings, action=Action.RULE_SET, tenant=tenant,
                        params={"metric": "revenue", "threshold_sigma": 5.0}, actor="ops", reason="test")
    home = partition_for(tenant, settings.partitions)
    value = encode_one(cmd)
    producer = KafkaProducer(bootstrap_servers=settings.broker, acks="all", linger_ms=0)
    name = topic_name(settings.topic_prefix, Topic.COMMANDS)
    producer.send(name, key=tenant.encode(), value=value, partition=home)  # the original, as the CLI sends it
    for i in range(REPLAYS):  # captured off the wire and re-sent at once
        partition = i % settings.partitions
        # keys that route elsewhere, the tenant's own key on a foreign partition, and the exact original routing
        key = tenant if i % 5 == 0 else f"other-{i}"
        producer.send(name, key=key.encode(), value=value, partition=home if i % 10 == 0 else partition)
    producer.flush()
    producer.close()

    def audits() -> list[AuditRecord]:
        # One record per delivery attempt (id = nonce + partition:offset); a rebalance may redeliver one.
        found = {a.id: a for a in read_topic(settings, Topic.AUDIT, AuditRecord) if a.nonce == cmd.nonce}
        return list(found.values()) if len(found) >= REPLAYS + 1 else []

    found = wait_for(audits, timeout=120, what="an audit record for the command and each replay")
    outcomes = Counter(a.outcome for a in found)
    assert outcomes == {"accepted": 1, "rejected": REPLAYS}, Counter((a.outcome, a.reason) for a in found)
    reasons = Counter(a.reason for a in found if a.outcome == "rejected")
    assert all(r == "replayed nonce" or r.startswith("misrouted command") for r in reasons), reasons
    assert reasons["replayed nonce"] >= 2, f"the exact original routing is refused as a replay: {reasons}"
