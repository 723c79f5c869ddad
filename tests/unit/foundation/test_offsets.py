"""The input-offset tracker: every record once, in order, and no record skipped unnoticed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.runtime.offsets import OffsetTracker

T = "tw.requests"


def ev(offset: int, p: int = 0, topic: str = T) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=p, offset=offset))


def offsets(events: list[Any]) -> list[int]:
    return [e.message.offset for e in events]


def owned_from(start: int = 0) -> Any:
    return lambda key: start


def test_contiguous_records_pass_and_redelivered_ones_are_skipped() -> None:
    t = OffsetTracker()
    first = t.admit([ev(0), ev(1), ev(2)], owned_from(0))
    again = t.admit([ev(1), ev(2), ev(3)], owned_from(0))
    assert offsets(first.fresh) == [0, 1, 2]
    assert not first.gaps
    assert offsets(again.fresh) == [3]
    assert again.redelivered == 2
    assert t.commit_limit((T, 0), owned_from(0)) == 4


def test_a_record_beyond_the_next_is_held_back_with_everything_after_it() -> None:
    t = OffsetTracker()
    got = t.admit([ev(0), ev(3), ev(4), ev(0, p=1)], owned_from(0))
    assert offsets(got.fresh) == [0, 0]
    gap = got.gaps[(T, 0)]
    assert (gap.expected, gap.seen, offsets(gap.events)) == (1, 3, [3, 4])
    assert t.commit_limit((T, 0), owned_from(0)) == 1, "nothing past the hole may be committed"


def test_a_partition_never_processed_starts_at_its_committed_offset() -> None:
    t = OffsetTracker()
    got = t.admit([ev(2), ev(3)], owned_from(0))  # never committed: must start at 0
    assert got.fresh == []
    assert got.gaps[(T, 0)].expected == 0
    assert t.commit_limit((T, 0), owned_from(0)) == 0
    resumed = OffsetTracker().admit([ev(7), ev(8)], owned_from(7))  # committed at 7
    assert offsets(resumed.fresh) == [7, 8]


def test_a_partition_not_owned_is_not_judged() -> None:
    t = OffsetTracker()
    got = t.admit([ev(5), ev(6)], lambda key: None)
    assert offsets(got.fresh) == [5, 6]
    assert t.commit_limit((T, 1), lambda key: None) is None


def test_a_gap_without_records_releases_what_was_held() -> None:
    t = OffsetTracker()
    got = t.admit([ev(0), ev(2), ev(3)], owned_from(0))  # offset 1: a transaction marker, say
    settled = t.resolve((T, 0), got.gaps[(T, 0)], first=2)
    assert settled is not None
    assert offsets(settled.fresh) == [2, 3]
    assert t.counts["gaps_without_records"] == 1
    assert offsets(t.admit([ev(4)], owned_from(0)).fresh) == [4]


def test_a_gap_that_holds_records_is_read_again_from_the_first() -> None:
    t = OffsetTracker()
    got = t.admit([ev(0), ev(5), ev(6)], owned_from(0))
    gap = got.gaps[(T, 0)]
    assert t.resolve((T, 0), gap, first=2) is None  # offset 1 has no record, 2-4 were skipped
    assert t.rewind_to((T, 0), gap) == 2
    stale = t.admit([ev(7), ev(8)], owned_from(0))  # fetched before the seek took effect
    assert stale.fresh == []
    assert stale.gaps[(T, 0)].rewinding
    again = t.admit([ev(2), ev(3), ev(4), ev(5), ev(6), ev(7)], owned_from(0))
    assert offsets(again.fresh) == [2, 3, 4, 5, 6, 7]
    assert not again.gaps
    late = t.admit([ev(9)], owned_from(0))
    assert not late.gaps[(T, 0)].rewinding, "a new gap after the rewind is probed again"
    assert t.counts["skips_refetched"] == 1


def test_a_gap_found_in_what_a_settled_gap_released_is_reported_too() -> None:
    t = OffsetTracker()
    got = t.admit([ev(0), ev(2), ev(5)], owned_from(0))
    settled = t.resolve((T, 0), got.gaps[(T, 0)], first=2)
    assert settled is not None
    assert offsets(settled.fresh) == [2]
    assert settled.gaps[(T, 0)].expected == 3
    assert settled.gaps[(T, 0)].seen == 5


def test_reset_keeps_only_what_recovery_covers() -> None:
    t = OffsetTracker()
    t.admit([ev(0), ev(1)], owned_from(0))
    t.reset({(T, 1): 9})
    assert t.done == {(T, 1): 9}
    assert offsets(t.admit([ev(9, p=1), ev(10, p=1)], owned_from(0)).fresh) == [10]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_whatever_the_consumer_delivers_each_record_is_processed_once_in_order(data: st.DataObject) -> None:
    """A log with holes (offsets without records), delivered with records lost, repeated and
    re-fetched, through the runtime's loop: probe the broker at each gap, seek on skipped records."""
    n = data.draw(st.integers(1, 40))
    log = sorted(data.draw(st.sets(st.integers(0, 3 * n), min_size=1, max_size=n)))
    t = OffsetTracker()
    processed: list[int] = []
    position = 0  # the consumer's fetch position
    for _ in range(200):
        ahead = [o for o in log if o >= position]
        if not ahead:
            break
        take = ahead[:data.draw(st.integers(1, 6))]
        # The consumer may lose records (Faust's drops) or deliver some twice. A lost record shows
        # only when a later one comes: the log's last is delivered.
        delivered = [o for o in take if o == log[-1] or not data.draw(st.booleans(), label="lose")]
        if processed and data.draw(st.booleans(), label="redeliver"):
            delivered = processed[-2:] + delivered
        position = take[-1] + 1
        got = t.admit([ev(o) for o in delivered], owned_from(0))
        processed += offsets(got.fresh)
        pending = dict(got.gaps)
        while pending:
            key, gap = pending.popitem()
            if gap.rewinding:
                position = t.rewind_to(key, gap)
                continue
            first = next(o for o in log if o >= gap.expected)
            settled = t.resolve(key, gap, first)
            if settled is None:
                position = t.rewind_to(key, gap)
                continue
            processed += offsets(settled.fresh)
            pending.update(settled.gaps)
        limit = t.commit_limit((T, 0), owned_from(0))
        assert limit is not None
        assert all(o in processed for o in log if o < limit), "committed past a record"
    assert processed == sorted(set(processed)), "each record once, in order"
    assert processed == log[:len(processed)], "no record skipped"
    assert processed == log


def test_the_runtime_probes_a_gap_and_reads_skipped_records_again(monkeypatch: Any) -> None:
    """Would fail if a record the consumer never delivered went unnoticed (its partition's
    count short, and the commit moved past it), or if a gap without records stalled a partition."""
    from faust.types import TP

    from pipeline.runtime import core
    from pipeline.runtime.core import Runtime
    from pipeline.runtime.faust_adapter import cap_commits
    from pipeline.runtime.topics import Topic
    from pipeline.settings import Settings
    from schemas.events import RequestEvent
    from tests.unit.foundation.fakes import fake_app

    log = {0: [0, 1, 2, 3, 4], 1: [0, 2, 3]}  # partition 1 has no record at offset 1
    seeks: list[tuple[int, int]] = []

    async def seek(tp: Any, offset: int) -> None:
        seeks.append((tp.partition, offset))

    acked = {TP(T, 0): 5}  # what Faust would commit from its acknowledgements
    consumer = SimpleNamespace(_new_offset=acked.get, assignment=lambda: {TP(T, 0), TP(T, 1)},
                               _committed_offset={}, seek=seek)
    rt = Runtime(fake_app(consumer=consumer), Settings())
    rt.add_input(Topic.REQUESTS, RequestEvent, rows=True)
    probes: list[tuple[int, int]] = []

    async def first_offset_from(settings: Any, topic: str, partition: int, offset: int) -> int:
        probes.append((partition, offset))
        return next(o for o in log[partition] if o >= offset)

    monkeypatch.setattr(core, "_first_offset_from", first_offset_from)

    async def run(*batch: tuple[int, int]) -> list[tuple[int, int]]:
        fresh = await rt._first_time([ev(o, p) for p, o in batch])
        return [(e.message.partition, e.message.offset) for e in fresh]

    assert asyncio.run(run((0, 0), (0, 3), (0, 4), (1, 0), (1, 2))) == [(0, 0), (1, 0), (1, 2)]
    assert sorted(probes) == [(0, 1), (1, 1)]
    assert seeks == [(0, 1)], "partition 0 lost records 1-2: read again from 1"
    assert consumer._new_offset(TP(T, 0)) == 1, "the commit stays below the lost records"
    assert asyncio.run(run((0, 1), (0, 2), (0, 3), (0, 4), (1, 3))) == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 3)]
    assert consumer._new_offset(TP(T, 0)) == 5
    assert rt.extra_status()["offsets"] == {"redelivered": 0, "gaps_without_records": 1, "skips_refetched": 1,
                                            "seeks": 1, "tail_seeks": 0}
    cap_commits(rt.app, lambda topic, p: 0)  # idempotent: the runtime's bound stays the one in force
    assert consumer._new_offset(TP(T, 0)) == 5


def test_a_quiet_partition_whose_last_records_were_skipped_is_read_again(monkeypatch: Any) -> None:
    """Would fail if records the consumer fetched but never handed over stayed unprocessed because
    no later record came to show the gap, or if a tail without records were sought again and again."""
    from faust.types import TP

    from pipeline.runtime import core
    from pipeline.runtime.core import Runtime
    from pipeline.runtime.topics import Topic
    from pipeline.settings import Settings
    from schemas.events import RequestEvent
    from tests.unit.foundation.fakes import fake_app

    seeks: list[tuple[int, int]] = []

    async def seek(tp: Any, offset: int) -> None:
        seeks.append((tp.partition, offset))

    highwater = {TP(T, 0): 5, TP(T, 1): 3}  # partition 1: offset 2 is a transaction marker
    consumer = SimpleNamespace(_new_offset=lambda tp: None, assignment=lambda: set(highwater), _committed_offset={},
                               seek=seek, highwater=highwater.get)
    rt = Runtime(fake_app(consumer=consumer), Settings())
    rt.add_input(Topic.REQUESTS, RequestEvent, rows=True)
    probes: list[tuple[int, int]] = []

    async def first_offset_from(settings: Any, topic: str, partition: int, offset: int, timeout_s: float) -> Any:
        probes.append((partition, offset))
        return offset if partition == 0 else None

    monkeypatch.setattr(core, "_first_offset_from", first_offset_from)
    asyncio.run(rt._first_time([ev(0), ev(1), ev(2), ev(0, p=1), ev(1, p=1)]))  # 3 and 4 of partition 0 lost
    rt._last_batch_end -= 2 * rt._tail_quiet_s
    asyncio.run(rt._check_tails())
    assert (seeks, probes) == ([], []), "judged only once it stayed so for a whole quiet period"
    asyncio.run(rt._check_tails())
    assert seeks == [(0, 3)]
    assert sorted(probes) == [(0, 3), (1, 2)]
    assert asyncio.run(rt._first_time([ev(3), ev(4)])) != []  # what the seek fetched again
    rt._last_batch_end -= 2 * rt._tail_quiet_s
    for _ in range(3):
        asyncio.run(rt._check_tails())
    assert sorted(probes) == [(0, 3), (1, 2)], "a tail without records is not probed again"
    assert seeks == [(0, 3)]
    assert rt.offsets.counts["tail_seeks"] == 1
