"""Creating and inspecting tenantwatch's topics with kafka-python's admin client."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.adapters.kafka_config import client_kwargs
from pipeline.runtime.topics import TOPICS, WORKER_TOPICS, topic_name
from pipeline.settings import Settings

__all__ = ["caught_up", "committed_offsets", "end_offsets", "ensure_topics"]


_COMPACTION_LAG_MS = 7 * 24 * 3600 * 1000


def ensure_topics(settings: Settings, extra: Mapping[str, bool] | None = None,
                  one_partition: Iterable[str] = ()) -> list[str]:
    """Create every topic that does not exist yet; return the names created.

    `extra` adds topics by full name (value: compacted), e.g. a Faust app's table changelogs;
    `one_partition` adds topics of a single partition (Faust's leader-assignor topic).
    """
    from pipeline.adapters.kafka_clients import SafeAdminClient

    admin = SafeAdminClient(bootstrap_servers=settings.broker, client_id=f"{settings.app_id}-admin",
                             **client_kwargs(settings, "kafka-python"))
    try:
        existing = set(admin.list_topics())
        wanted: dict[str, dict[str, Any]] = {}
        topics = {topic_name(settings.topic_prefix, spec.topic): spec.compacted
                  for spec in (*TOPICS.values(), *WORKER_TOPICS.values())}
        topics.update(extra or {})
        single = set(one_partition)
        topics.update(dict.fromkeys(single, False))
        for name, compacted in topics.items():
            if name in existing:
                continue
            # A compacted topic keeps a week of history uncompacted: fenced table changelogs
            # need a key's previous record until the record after it is covered by a
            # checkpoint (pipeline.runtime.state), however long a stopped worker stays down.
            configs = ({"cleanup.policy": "compact", "min.compaction.lag.ms": str(_COMPACTION_LAG_MS)}
                       if compacted else {})
            wanted[name] = {
                "num_partitions": 1 if name in single else settings.partitions,
                "replication_factor": settings.replication,
                "configs": configs,
            }
        if wanted:
            admin.create_topics(wanted, raise_errors=False, wait_for_metadata=True)
        return sorted(wanted)
    finally:
        admin.close()


def end_offsets(bootstrap: str, topics: list[str], options: Mapping[str, Any] | None = None,
                ) -> dict[tuple[str, int], int]:
    """The end offset of every partition of `topics` (how far producers have written).

    `options`: client security settings (`pipeline.adapters.kafka_config.client_kwargs(settings, "kafka-python")`).
    """
    import time

    from kafka.structs import TopicPartition

    from pipeline.adapters.kafka_clients import SafeConsumer

    consumer = SafeConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **(options or {}))
    try:
        tps = []
        for t in topics:
            # A fresh client may not have the topic's metadata yet: an empty answer here made
            # `caught_up` vacuously true while a worker was still writing.
            deadline = time.monotonic() + 10.0
            while not (parts := consumer.partitions_for_topic(t)):
                if time.monotonic() > deadline:
                    raise LookupError(f"topic {t!r} has no partitions (does it exist?)")
                consumer.topics()  # fetches every topic's metadata
                time.sleep(0.05)
            tps += [TopicPartition(t, p) for p in sorted(parts)]
        return {(tp.topic, tp.partition): off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, attempts: int = 5, options: Mapping[str, Any] | None = None,
                      ) -> dict[tuple[str, int], int]:
    """The offsets consumer group `group` has committed, per (topic, partition).

    Retries retriable errors (the group's coordinator moving or loading, as while a group
    forms on a busy broker) a few times with a short back-off before raising them.
    """
    import time

    from kafka.errors import KafkaError

    from pipeline.adapters.kafka_clients import SafeAdminClient

    admin = SafeAdminClient(bootstrap_servers=bootstrap, **(options or {}))

    def fetch() -> dict[tuple[str, int], int]:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
        return {(tp.topic, tp.partition): om.offset for tp, om in offsets.items()}

    try:
        for attempt in range(attempts - 1):
            try:
                return fetch()
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                time.sleep(0.1 * 2**attempt)
        return fetch()
    finally:
        admin.close()


def caught_up(bootstrap: str, group: str, topics: list[str], options: Mapping[str, Any] | None = None) -> bool:
    """True when `group` has committed up to the end of every partition of `topics`."""
    ends = end_offsets(bootstrap, topics, options)
    done = committed_offsets(bootstrap, group, options=options)
    return all(done.get(k, 0) >= end for k, end in ends.items())
