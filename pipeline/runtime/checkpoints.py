"""The I/O of checkpoint epochs (`pipeline.runtime.state`): the checkpoint topic, fenced tables, compensation.

`Checkpoints` belongs to a `Runtime`. Before tables recover (each rebalance) it reads the
compacted topic ``<app>-checkpoints`` into the runtime's `EpochFence`; while they recover it
drops changelog records of epochs no checkpoint covers (`fence`), remembering their keys; once
recovery is complete it rewrites those keys with their recovered values under the committed
epoch (so a later recovery ends on them whatever epoch numbers come again), then hands the
checkpoints to the runtime (offsets done, event times). At each runtime checkpoint it writes
the sealed epochs' records.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.runtime.faust_adapter import before_recovery, filter_changelog
from pipeline.runtime.state import Checkpoint, EpochFence, decode_checkpoint, encode_checkpoint

__all__ = ["Checkpoints", "checkpoint_topic"]

log = logging.getLogger(__name__)


def checkpoint_topic(app_id: str) -> str:
    return f"{app_id}-checkpoints"


class Checkpoints:
    """Reads and writes the checkpoint topic of one app; fences its derived-state tables."""

    def __init__(self, runtime: Any, fence: EpochFence):
        self.runtime = runtime
        self.fence = fence
        self.topic = checkpoint_topic(runtime.settings.app_id)
        self.fenced: dict[str, Any] = {}  # changelog topic -> table
        self.skipped: dict[Any, dict[int, set[Any]]] = defaultdict(lambda: defaultdict(set))
        self.counts = {"loaded": 0, "written": 0, "skipped_records": 0, "compensated": 0, "bad_records": 0}
        before_recovery(runtime.app, self.load)
        runtime.app.on_rebalance_complete.connect(self._on_recovered)
        runtime.add_status("checkpoints", lambda: dict(self.counts))

    # -- tables ------------------------------------------------------------------------------
    def fence_table(self, table: Any) -> None:
        """Apply only durable epochs of `table`'s changelog at recovery (records untagged: always)."""
        self.fenced[table.changelog_topic.get_topic_name()] = table

        def admits(partition: int, key: Any, headers: Any) -> bool:
            if self.fence.admits(partition, headers):
                return True
            self.skipped[table][partition].add(key)
            self.counts["skipped_records"] += 1
            return False

        filter_changelog(table, admits)

    def is_fenced(self, table: Any) -> bool:
        return table.changelog_topic.get_topic_name() in self.fenced

    # -- recovery ----------------------------------------------------------------------------
    async def load(self, assigned: Iterable[Any]) -> None:
        """Read every checkpoint record (before any table recovers) into the fence."""
        partitions = {tp.partition for tp in assigned}
        self.fence.forget(set(self.fence.checkpoints) - partitions)  # the new owners' epochs now
        records = await self._read_all()
        for p in partitions:
            raw = records.get(str(p).encode())
            if raw is None:
                continue
            try:
                cp = decode_checkpoint(raw)
            except ValueError as exc:
                # Not ours (a hostile or broken writer). Treated as no checkpoint: tagged records
                # of that partition are skipped and recomputed from the inputs' committed offsets.
                self.counts["bad_records"] += 1
                log.error("checkpoint record of partition %d ignored: %s", p, exc)
                continue
            self.fence.load(p, cp)
            self.counts["loaded"] += 1
        self.skipped.clear()

    async def _read_all(self) -> dict[bytes, bytes]:
        """The latest value per key of the (small, compacted) checkpoint topic."""
        from aiokafka import TopicPartition

        from pipeline.adapters.kafka_reader import reader

        async with reader(self.runtime.settings) as consumer:
            # Created with the inputs' partition count before the worker starts (`ensure_topics`).
            parts = [TopicPartition(self.topic, p) for p in range(self.runtime.settings.partitions)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            latest: dict[bytes, bytes] = {}
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                batches = await consumer.getmany(timeout_ms=1000)
                for messages in batches.values():
                    for m in messages:
                        if m.key is not None and m.value is not None:
                            latest[m.key] = m.value
            return latest

    async def _on_recovered(self, *args: Any, **kwargs: Any) -> None:
        """Compensate skipped keys, then hand the checkpoints to the runtime."""
        for table, by_partition in list(self.skipped.items()):
            writer = self.runtime.bulk_writer(table)
            for p, keys in by_partition.items():
                items = [(k, table.data.get(k)) for k in sorted(keys, key=repr)]
                self.counts["compensated"] += await writer.write(p, items, headers=self.fence.committed_header(p))
        if self.skipped:
            await self.runtime.make_durable()
            log.info("rewrote %d key(s) left by epochs no checkpoint covered", self.counts["compensated"])
        self.skipped.clear()
        self.runtime.resume_from(dict(self.fence.checkpoints))

    # -- checkpoints -------------------------------------------------------------------------
    async def write(self, checkpoints: Mapping[int, Checkpoint]) -> None:
        """Append one record per partition (key: the partition number) to the checkpoint topic."""
        for p, cp in sorted(checkpoints.items()):
            await self.runtime.bulk.append(self.topic, p, [(str(p).encode(), encode_checkpoint(cp))])
            self.counts["written"] += 1
