"""Which input records a worker processes: each partition's records once, in order, none skipped.

Per input topic-partition the tracker keeps `done`, the offset of the last record processed:
every record at or below it was processed, or is known not to exist. A record arriving

- at or below `done` was processed already (redelivered after a seek): skipped;
- at `done + 1` is processed;
- further on opens a *gap*. Offsets may hold no record (a transaction marker, the head of a log
  whose first segments retention deleted), or the consumer may have skipped records: Faust drops
  fetched records in several places around a rebalance (see `pipeline.runtime.faust_adapter`) and
  then relies on seeking back, and its commit of a partition never committed before moves past
  any offsets at the head that were never acknowledged. So the tracker holds a gap's records back
  (`Gap`) and the caller asks the broker which record really comes first (`resolve`): none in the
  gap, and the held records are processed; some, and the caller seeks back and the held records
  are dropped (they come again after the seek).

A skipped record shows as a gap only when a later record of its partition arrives. For the last
records of a partition that goes quiet, the runtime compares the partition's high-water mark with
`next_wanted` once the inputs are quiet (`Runtime._check_tails`).

`commit_limit` bounds what may be committed to what was processed without a hole. Pure: the
runtime (`pipeline.runtime.core`) does the probing and seeking, `faust_adapter` the capping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Admitted", "Gap", "Key", "OffsetTracker", "StartOf"]

Key = tuple[str, int]  # (topic name, partition)
# Where a partition's records start for a worker that has processed none of them: its committed
# offset (0 when never committed), or None when the worker does not own it (no judgement).
StartOf = Callable[[Key], "int | None"]


@dataclass(slots=True)
class Gap:
    """Records of one partition held back: the offset wanted next, and what came instead."""

    expected: int
    seen: int  # offset of the first record beyond `expected`
    events: list[Any] = field(default_factory=list)  # this batch's records of the partition from `seen` on
    rewinding: bool = False  # a seek back to `expected` is under way: these are records fetched before it


@dataclass(slots=True)
class Admitted:
    fresh: list[Any]  # records to process, in arrival order
    redelivered: int
    gaps: dict[Key, Gap]


class OffsetTracker:
    def __init__(self) -> None:
        self.done: dict[Key, int] = {}
        self._rewinding: set[Key] = set()
        # High-water marks whose tail was found to hold no record (markers): not probed again.
        self.tails_checked: dict[Key, int] = {}
        self.counts = {"gaps_without_records": 0, "skips_refetched": 0, "seeks": 0, "tail_seeks": 0}

    def admit(self, events: Iterable[Any], start_of: StartOf) -> Admitted:
        """Split a batch of Faust events (`.message.topic/.partition/.offset`)."""
        done, rewinding = self.done, self._rewinding
        fresh: list[Any] = []
        gaps: dict[Key, Gap] = {}
        starts: dict[Key, int | None] = {}
        redelivered = 0
        for ev in events:
            msg = ev.message
            key = (msg.topic, msg.partition)
            offset = msg.offset
            last = done.get(key)
            if last is None:  # (asked once a batch: held-back records of the key come here each)
                if key not in starts:
                    starts[key] = start_of(key)
                start = starts[key]
                last = offset - 1 if start is None else start - 1
            if offset <= last:
                redelivered += 1
            elif offset == last + 1:
                done[key] = offset
                fresh.append(ev)
                if rewinding:
                    rewinding.discard(key)
            else:
                gap = gaps.get(key)
                if gap is None:
                    gap = gaps[key] = Gap(last + 1, offset, rewinding=key in rewinding)
                gap.events.append(ev)
        return Admitted(fresh, redelivered, gaps)

    def resolve(self, key: Key, gap: Gap, first: int) -> Admitted | None:
        """Settle a gap given `first`, the offset of the broker's first record at or after `gap.expected`.

        When the gap holds no record, returns the held records split again (they may hold a
        further gap); else None, and the caller must seek the partition back (`rewind_to`).
        """
        first = min(first, gap.seen)  # (a later first: retention deleted what we hold meanwhile)
        if first > gap.expected:
            self.done[key] = first - 1  # offsets without records: nothing to wait for
        if first == gap.seen:
            self.counts["gaps_without_records"] += 1
            return self.admit(gap.events, lambda _: None)  # contiguous from `first` on now
        self.counts["skips_refetched"] += 1
        return None

    def rewind_to(self, key: Key, gap: Gap, *, probed: bool = True) -> int:
        """The offset to seek `key` back to: its next wanted record.

        `probed`: the broker said records were skipped, so records beyond that offset arriving
        before the seek takes effect are stale (`Gap.rewinding`: seek again, no new probe).
        Without a probe (it failed) the next gap is probed again.
        """
        self.counts["seeks"] += 1
        if probed:
            self._rewinding.add(key)
        return self.done.get(key, gap.expected - 1) + 1

    def next_wanted(self, key: Key, start_of: StartOf) -> int | None:
        """The offset of the next record `key` must process (None: a partition not judged)."""
        last = self.done.get(key)
        if last is not None:
            return last + 1
        return start_of(key)

    def commit_limit(self, key: Key, start_of: StartOf) -> int | None:
        """The highest offset that may be committed for `key` (None: no bound)."""
        return self.next_wanted(key, start_of)

    def reset(self, done: Mapping[Key, int]) -> None:
        """After recovery: exactly what the recovered checkpoints cover, nothing else remembered."""
        self.done = dict(done)
        self._rewinding.clear()
        self.tails_checked.clear()
