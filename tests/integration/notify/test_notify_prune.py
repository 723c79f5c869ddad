"""The delivery log forgets old deliveries on the real stack: a tombstone per id in the changelog.

The worker runs with a 2-second max age and a 1-second prune timer, so deliveries logged as
sent are deleted moments later, through the table: their changelog ends in a tombstone (so a
restarted worker does not recover them), on the partition (lane) they were written to.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.devstack.smtp_sink import SmtpSink
from pipeline.runtime.topics import Topic
from pipeline.sdk import partition_for
from pipeline.settings import Settings
from schemas.notify import Notification
from tests.conftest import WorkerProcess, wait_for
from tests.integration.anomaly.anomaly_helpers import produce

pytestmark = pytest.mark.integration

TS = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def changelog(settings: Settings) -> dict[str, list[tuple[int, bool]]]:
    """Deliveries changelog: notification id → [(partition, is the value set)] in offset order."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    name = f"{settings.app_id}-{settings.app_id}-notify-deliveries-changelog"
    consumer = KafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False)
    out: dict[str, list[tuple[int, bool]]] = {}
    try:
        parts = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        if not parts:
            return out
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for tp, messages in consumer.poll(timeout_ms=5000).items():
                for msg in messages:
                    out.setdefault(json.loads(msg.key), []).append((tp.partition, msg.value is not None))
    finally:
        consumer.close()
    return out


def mail(i: int, tenant: str) -> Notification:
    return Notification(id=f"prune-{tenant}-{i}", kind="ban_notice", recipient=f"r{i}@{tenant}.example",
                        tenant_id=tenant, ts=TS, variables={"tenant_id": tenant, "ip": f"203.0.113.{i}",
                                                            "reason": "test", "until": "13:00 UTC"})


def test_finished_deliveries_are_deleted_with_tombstones_after_their_max_age(
    kafka: str, session_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent deliveries older than the max age leave the table: set, then a tombstone, same partition."""
    monkeypatch.setenv("TW_NOTIFY_DELIVERIES_MAX_AGE_S", "2")
    monkeypatch.setenv("TW_NOTIFY_PRUNE_INTERVAL_S", "1")
    prefix = f"np{uuid.uuid4().hex[:8]}"
    tenant = f"prune-{uuid.uuid4().hex[:6]}"
    notes = [mail(i, tenant) for i in range(1, 4)]
    with SmtpSink(tmp_path / "mail") as sink:
        settings = Settings(broker=kafka, topic_prefix=prefix, app_id=f"tw-{prefix}", data_dir=session_dir / prefix,
                            clickhouse_dsn=f"chdb://{session_dir / 'clickhouse'}", partitions=4, smtp_port=sink.port)
        ensure_topics(settings)
        worker = WorkerProcess(settings, capabilities="notify").start()
        try:
            produce(settings, Topic.NOTIFICATIONS, [(n.recipient, n) for n in notes])
            wait_for(lambda: len(sink.files()) == 3, timeout=120,
                     what=lambda: f"three mails (worker log: {worker.log})")
            ids = {n.id for n in notes}
            log = wait_for(lambda: (c := changelog(settings)) and all(c.get(i, [(0, True)])[-1][1] is False
                                                                      for i in ids) and c,
                           timeout=60, what=lambda: f"tombstones of every delivery (changelog {changelog(settings)})")
        finally:
            worker.stop()
    for n in notes:
        entries = log[n.id]
        assert entries[0][1], f"{n.id}: written first"
        assert not entries[-1][1], f"{n.id}: ends in a tombstone"
        lane = partition_for(n.recipient, settings.partitions)
        assert {p for p, _ in entries} == {lane}, f"{n.id}: all on its lane's partition"
