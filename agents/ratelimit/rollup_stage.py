"""Faust wiring of the two rollup stages (the cores: :mod:`~agents.ratelimit.rollup` and
:mod:`~agents.ratelimit.combine`).

Stage 1, per partition ``p`` of ``requests`` (the rate limiter's batches): the parts its
:class:`MinuteRollups` closed go to the partition of ``rollup-parts`` their tenant key maps to,
inside :class:`RollupParts` envelopes; whenever ``p``'s closed-minute boundary moves, every
partition of ``rollup-parts`` gets an envelope with the new watermark (parts or not), so each
combiner hears from every source. Envelopes of a batch go out before its checkpoint, in order.

Idle rule: every ``source_idle_s / 2`` seconds this worker looks at the requests partitions it
holds. One whose records are all processed (processed offset = end offset - 1) and where no
record arrived for ``source_idle_s`` (wall time: only *whether* to stop waiting depends on it,
never an event time) flushes its open minutes (:meth:`MinuteRollups.flush`), checkpoints, and
sends ``idle`` envelopes with its final watermark and its processed offset to every combiner
(again whenever it read more records, dead letters only, while idle); a partition that never
had a record sends them with no watermark. Its next batch re-activates it. A combiner leaves
an idle source out only while the broker shows its partition ending at that offset (end
offsets asked when a close relies on it, fresh when another source just woke): a backlog
published to quiet partitions wakes them one by one, and the first one read cannot close the
minutes the others are about to deliver. On replayed data (published before it is read) a
partition is caught up only at its end anyway; on live traffic a partition quiet for
``source_idle_s`` whose records land after a combiner looked at its end, older than the
others' watermark, gets its parts counted as late (never added silently).

Stage 2, per partition ``q`` of ``rollup-parts``: a :class:`RollupCombiner` (state in the
fenced table ``<app>-ratelimit-combine``, written at each checkpoint like the rate limiter's
keys, see docs/STATE.md) adds the parts; complete rollups
go to partition ``q`` of ``rollups`` in (minute, tenant) order (a tenant key maps to the same
partition on every topic), so a consumer there sees minutes in order; late rows follow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from agents.ratelimit.combine import PER_RECORD, RollupCombiner, envelopes
from agents.ratelimit.rollup import MinuteRollups
from pipeline.runtime.codec import encode_batch, encode_one
from pipeline.runtime.core import PartitionBatch, Runtime, StagedWrite
from pipeline.runtime.table_codecs import BytesValue, StrKey
from pipeline.runtime.topics import Topic
from schemas.ratelimit import Rollup, RollupParts

__all__ = ["RollupStage"]

log = logging.getLogger(__name__)


class RollupStage:
    """Publishes the rate limiter's parts with its watermarks; combines them into complete rollups."""

    def __init__(self, runtime: Runtime, rollups: dict[int, MinuteRollups],
                 core_of: Callable[[int], MinuteRollups]) -> None:
        s = runtime.settings
        self.runtime = runtime
        self.partitions = s.partitions
        self.idle_s = s.source_idle_s
        self.rollups = rollups  # the rate limiter's stage-1 cores, by requests partition
        self.core_of = core_of  # a partition's core, adopted from its table if not built yet
        self.table = runtime.table(f"{s.app_id}-ratelimit-combine", default=None, key_type=StrKey,
                                   value_type=BytesValue)
        self._writer = runtime.bulk_writer(self.table)
        self.combiners: dict[int, RollupCombiner] = {}
        self._sent: dict[int, float | None] = {}  # requests partition → the watermark last sent
        # requests partitions announced idle (until their next batch) → the offset they had read then
        self._idle: dict[int, int] = {}
        self._seen: dict[int, tuple[int, float]] = {}  # requests partition → (processed offset, since)
        self.counts = {"parts_sent": 0, "idle_announced": 0, "end_offsets_failed": 0}
        self._ends: tuple[float, dict[int, int]] | None = None  # (when, requests partition → end offset)
        # Held from closing a partition's minutes to sending them with its watermark (the batch
        # handler and the idle tick): a watermark never overtakes a part it covers.
        self.lock = asyncio.Lock()
        runtime.add_input(Topic.ROLLUP_PARTS, RollupParts)
        runtime.on(Topic.ROLLUP_PARTS, self.on_parts)
        runtime.on_checkpoint(self._snapshot)
        runtime.app.timer(interval=self.idle_s / 2)(self._idle_tick)

    def clear(self) -> None:
        """Forget per-partition memory (rebalance): rebuilt from the table on the next batch."""
        self.combiners.clear()
        self._sent.clear()
        self._idle.clear()
        self._seen.clear()

    def status(self) -> dict[str, int]:
        c: dict[str, int] = dict(self.counts)
        for comb in self.combiners.values():
            for k, v in comb.counts.items():
                c[f"combine_{k}"] = c.get(f"combine_{k}", 0) + v
        c["combine_open"] = sum(x.open_minutes for x in self.combiners.values())
        c["late_events"] = sum(r.late for r in self.rollups.values())  # older than their partition's watermark
        c["idle_sources"] = len(self._idle)
        return c

    # -- stage 1 -------------------------------------------------------------------------------
    async def publish(self, source: int, parts: Sequence[Rollup], *, idle: bool = False) -> None:
        """Send `source`'s closed `parts` to their combiners, then its watermark to all that need it.

        Call with `lock` held, from the closing of `parts` on.
        """
        mark = self.rollups[source].closed_before if source in self.rollups else None
        moved = source not in self._sent or mark != self._sent[source]
        woke = source in self._idle and not idle
        topic = self.runtime.topic(Topic.ROLLUP_PARTS)
        read = self.runtime.processed_offset(Topic.REQUESTS, source)
        for q, env in envelopes(source, parts, mark, self.partitions, everyone=moved or idle or woke, idle=idle,
                                offset=read):
            await topic.send(key=None, value=encode_one(env), partition=q)
        self._sent[source] = mark
        self.counts["parts_sent"] += len(parts)
        if idle:
            self._idle[source] = read
            self.counts["idle_announced"] += 1
        else:
            self._idle.pop(source, None)

    async def _idle_tick(self) -> None:
        now = time.monotonic()
        for p in self.runtime.owned_partitions(Topic.REQUESTS):  # none before the worker's consumer starts
            done = self.runtime.processed_offset(Topic.REQUESTS, p)
            # An idle partition is announced again only when it read records since (dead letters
            # only: no batch woke it), so combiners compare its partition's end with the new offset.
            if self._idle.get(p) == done:
                continue
            seen = self._seen.get(p)
            if seen is None or seen[0] != done:
                self._seen[p] = (done, now)
                continue
            end = self.runtime.highwaters(Topic.REQUESTS).get(p)  # None: not fetched from yet
            if end is None or done + 1 < end or now - seen[1] < self.idle_s:
                continue
            async with self.lock:  # no batch of p between the flush and its envelopes
                if self.runtime.processed_offset(Topic.REQUESTS, p) != done:
                    continue
                core = self.core_of(p)  # after a restart: the open minutes of the table, flushed too
                flushed = core.flush() + core.take_late()
                await self.publish(p, flushed, idle=True)
            log.info("requests partition %d idle: %d minute(s) flushed, watermark %s", p, len(flushed),
                     core.closed_before)
            if flushed:
                await self.runtime.checkpoint()  # the flushed minutes leave the table with the batches before

    # -- stage 2 -------------------------------------------------------------------------------
    def combiner(self, q: int) -> RollupCombiner:
        """The combiner of partition `q` of rollup-parts, rebuilt from the table on first use."""
        comb = self.combiners.get(q)
        if comb is None:
            comb = self.combiners[q] = RollupCombiner(self.partitions, part=q)
            for key, raw in list(self.table.items()):
                if isinstance(raw, bytes) and key.startswith(comb.prefix):
                    comb.restore(key, raw)
            log.info("rollup combiner %d adopted %d open minute(s)", q, comb.open_minutes)
        return comb

    async def _backlog(self, comb: RollupCombiner, *, fresh: bool) -> set[int]:
        """The combiner's idle sources whose requests partition has records past the offset they
        had read (`RollupCombiner.close`): asked of the broker only when a close relies on an idle
        source, at most once a second unless a source just woke (when the others' partitions may
        have been written to as well: a backlog published to quiet partitions)."""
        idle = {s: at for s, at in comb.idle_offsets().items() if at is not None}
        if not idle or comb.watermark() == comb.watermark(backlog=idle):
            return set()
        now = time.monotonic()
        if fresh or self._ends is None or now - self._ends[0] > 1.0:
            try:
                self._ends = (now, await asyncio.wait_for(self.runtime.end_offsets(Topic.REQUESTS), timeout=5.0))
            except Exception as exc:  # the broker did not answer: go by the announcements, as before
                self.counts["end_offsets_failed"] += 1
                log.warning("end offsets of the requests partitions: %s", f"{type(exc).__name__}: {exc}"[:200])
                return set()
        ends = self._ends[1]
        return {s for s, at in idle.items() if ends.get(s, 0) > at + 1}

    def _snapshot(self) -> list[StagedWrite]:
        """Checkpoint (`Runtime.on_checkpoint`): each combiner's open minutes and marks changed since the last one.

        Written behind, not per batch: in a replay most minutes open and close between two
        checkpoints and are never written at all (a third of the second stage's cost was these
        writes). A crash repeats the batches after the last checkpoint from that state.
        """
        staged = []
        for q, comb in self.combiners.items():
            if changes := comb.take_changes():
                staged.append(StagedWrite(self._writer, q, self._writer.encode(changes)))
        return staged

    async def on_parts(self, batches: Sequence[PartitionBatch]) -> None:
        """Add the envelopes' parts; publish the tenant-minutes every source has passed."""
        topic = self.runtime.topic(Topic.ROLLUPS)
        for b in batches:
            comb = self.combiner(b.partition)
            late: list[Rollup] = []
            idle_before = comb.idle_offsets()
            for env in b.events:
                late += comb.add(env)
            woke = not idle_before.keys() <= comb.idle_offsets().keys()
            closed = comb.close(await self._backlog(comb, fresh=woke))
            out = closed + late
            for i in range(0, len(out), PER_RECORD):
                await topic.send(key=None, value=encode_batch(out[i:i + PER_RECORD]), partition=b.partition)
