"""The rollup combiner: parts from every requests partition → one complete rollup per tenant-minute.

Timeline of the closing rule (two sources, minutes 0..3; ``|`` = a source's watermark)::

    source 0:  m0 m1 m2 |            → W = min(w0, w1): nothing before source 1 speaks
    source 1:  m0 |                  → W = end of m0: m0 closes, m1 and m2 wait for source 1
    source 1:  (idle, flushed m1)    → W = w0: m1, m2 close
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.ratelimit.combine import RollupCombiner, envelopes
from agents.ratelimit.rollup import MinuteRollups, hist_quantile, hist_quantiles
from pipeline.runtime.codec import encode_one
from pipeline.sdk import partition_for
from schemas.ratelimit import Rollup, RollupParts

T0 = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
LATENESS = 5.0

Req = tuple[int, int, float, int]  # tenant, ip, seconds after T0, status


def part(tenant: str, minute: int, source: int, requests: int = 3) -> Rollup:
    return Rollup.create(tenant_id=tenant, minute=datetime.fromtimestamp(T0 + 60 * minute, UTC), part=source,
                         requests=requests, errors=1, client_errors=0, blocked=0, distinct_ips=1,
                         latency_sum_ms=3.0, latency_count=requests, latency_max_ms=2.0, latency_p50_ms=1.0,
                         latency_p95_ms=2.0, latency_hist={30: requests})


def env(source: int, parts: list[Rollup] | None = None, minute: int | None = None, idle: bool = False) -> RollupParts:
    return RollupParts(source=source, watermark=None if minute is None else T0 + 60 * minute, idle=idle,
                       parts=parts or [])


def stage1(reqs: list[Req], sources: int, targets: int, cuts: list[int]) -> dict[int, list[list[RollupParts]]]:
    """What each source sends to each target: the rate limiter's rollups, batch by batch, then idle."""
    out: dict[int, list[list[RollupParts]]] = {q: [[] for _ in range(sources)] for q in range(targets)}
    for s in range(sources):
        mine = sorted((r for r in reqs if partition_for(f"t{r[0]}:10.0.0.{r[1]}", sources) == s), key=lambda r: r[2])
        core, sent = MinuteRollups(part=s), None
        bounds = sorted({0, len(mine), *(c % (len(mine) + 1) for c in cuts)})
        batches = [mine[a:b] for a, b in pairwise(bounds)] + [[]]
        for i, batch in enumerate(batches):
            for tenant, ip, at, status in batch:
                core.add(f"t{tenant}", f"10.0.0.{ip}", T0 + at, status=status, latency_ms=1.0 + ip)
            idle = i == len(batches) - 1
            closed = core.flush() if idle else (core.close(T0 + batch[-1][2] - LATENESS) if batch else [])
            mark = core.closed_before
            assert_revalidates(closed)
            for q, e in envelopes(s, closed, mark, targets, everyone=idle or mark != sent, idle=idle):
                out[q][s].append(e)
            sent = mark
    return out


def interleave(streams: list[list[RollupParts]], rng: random.Random) -> Iterator[RollupParts]:
    """Merge the sources' envelope streams at random, keeping each source's order."""
    queues = [list(s) for s in streams]
    while any(queues):
        q = rng.choice([q for q in queues if q])
        yield q.pop(0)


def combine(sent: dict[int, list[list[RollupParts]]], sources: int, seed: int) -> list[Rollup]:
    """Feed every target's combiner an interleaving in random batches; check the closing rule on the way."""
    rng = random.Random(seed)
    out: list[Rollup] = []
    for q, streams in sent.items():
        comb = RollupCombiner(sources, part=q)
        marks: dict[int, float] = {}
        idle: set[int] = set()
        stream = list(interleave(streams, rng))
        i = 0
        while i < len(stream):
            n = rng.randint(1, 4)
            for e in stream[i:i + n]:
                assert comb.add(e) == [], "no part is late when every source sends in order"
                if e.watermark is not None:
                    marks[e.source] = max(marks.get(e.source, e.watermark), e.watermark)
                if e.idle:
                    idle.add(e.source)
            i += n
            closed = comb.close()
            active = set(range(sources)) - idle
            for r in closed:
                end = r.minute.timestamp() + 60
                assert all(s in marks and marks[s] >= end for s in active), \
                    f"{r.minute} closed before every active source passed it: {marks}, idle {idle}"
            assert_revalidates(closed)
            out += closed
    return out


def assert_revalidates(rows: list[Rollup]) -> None:
    """Rows as published read back as the same rows, byte for byte (ids, floats, histogram)."""
    for r in rows:
        again = Rollup.model_validate_json(encode_one(r))
        assert again.model_dump() == r.model_dump()
        assert encode_one(again) == encode_one(r)


requests_st = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 9), st.floats(0, 900, allow_nan=False),
                                 st.sampled_from([200, 200, 404, 503])), min_size=1, max_size=120)


@settings(max_examples=60, deadline=None)
@given(reqs=requests_st, sources=st.integers(1, 5), targets=st.integers(1, 3),
       cuts=st.lists(st.integers(0, 200), max_size=6), seeds=st.tuples(st.integers(0, 999), st.integers(0, 999)))
def test_any_interleaving_and_batching_gives_the_same_exact_rollups(reqs: list[Req], sources: int, targets: int,
                                                                    cuts: list[int], seeds: tuple[int, int]) -> None:
    """One complete rollup per tenant-minute, equal to an independent count, whatever the interleaving."""
    sent = stage1(reqs, sources, targets, cuts)
    first, second = (combine(sent, sources, seed) for seed in seeds)
    assert sorted((r.model_dump() for r in first), key=lambda d: (d["minute"], d["tenant_id"])) == \
        sorted((r.model_dump() for r in second), key=lambda d: (d["minute"], d["tenant_id"]))
    truth = Counter((f"t{t}", int((T0 + at) // 60)) for t, _, at, _ in reqs)
    errors = Counter((f"t{t}", int((T0 + at) // 60)) for t, _, at, s in reqs if s >= 500)
    ips = {k: len({ip for t, ip, at, _ in reqs if (f"t{t}", int((T0 + at) // 60)) == k}) for k in truth}
    got = {(r.tenant_id, int(r.minute.timestamp() // 60)): r for r in first}
    assert len(got) == len(first), "one rollup per tenant-minute"
    assert {k: r.requests for k, r in got.items()} == dict(truth)
    assert {k: r.errors for k, r in got.items() if r.errors} == dict(errors)
    assert {k: r.distinct_ips for k, r in got.items()} == ips
    assert all(not r.late and r.latency_count == r.requests for r in first)


def test_a_minute_waits_for_every_source_then_idle_sources_are_left_out() -> None:
    """Nothing closes before every source spoke; an idle source stops holding the others back."""
    comb = RollupCombiner(2)
    comb.add(env(0, [part("a", 0, 0), part("a", 1, 0), part("a", 2, 0)], minute=3))
    assert comb.close() == [], "source 1 never spoke: it holds every minute"
    comb.add(env(1, [part("a", 0, 1)], minute=1))
    assert [(r.minute.timestamp(), r.requests, r.parts) for r in comb.close()] == [(T0, 6, 2)]
    comb.add(env(1, [part("a", 1, 1)], minute=2, idle=True))
    assert [(r.requests, r.parts) for r in comb.close()] == [(6, 2), (3, 1)]
    assert comb.watermark() == T0 + 180


def test_parts_after_their_minute_closed_are_late_rows_and_redeliveries_are_not_counted_twice() -> None:
    """A woken source's old part is a visible late row; a re-sent envelope changes nothing."""
    comb = RollupCombiner(2)
    first = env(0, [part("a", 0, 0)], minute=1)
    comb.add(first)
    comb.add(env(1, [], minute=0, idle=True))
    comb.add(env(0, [part("a", 1, 0), part("a", 2, 0)], minute=4))
    closed = comb.close()
    assert [r.requests for r in closed] == [3, 3, 3]
    late = comb.add(env(1, [part("a", 2, 1, requests=5)], minute=3))
    assert [(r.late, r.part, r.requests) for r in late] == [(True, 1, 5)]
    assert late[0].id != closed[2].id, "the late row does not replace the complete one"
    assert comb.add(first) == [], "a redelivered envelope is a duplicate, not late"
    assert comb.counts["late_parts"] == 1
    assert comb.counts["late_requests"] == 5
    assert comb.counts["duplicates"] == 1
    assert comb.close() == [], "the woken source holds the next minutes again"
    quiet = RollupCombiner(2)
    quiet.add(env(0, [part("a", 0, 0)], minute=1))
    quiet.add(env(1, idle=True))
    quiet.add(env(1))
    assert quiet.close() == [], "a source that wakes before its first watermark holds everything"
    quiet.add(env(1, minute=1))
    assert [r.requests for r in quiet.close()] == [3]


def test_an_idle_source_whose_partition_has_new_records_is_waited_for_again() -> None:
    """A backlog published to quiet partitions: the source read first cannot close the minutes the
    others are about to deliver while the broker shows records past what those others had read."""
    def quiet() -> RollupCombiner:
        comb = RollupCombiner(2)
        for s in (0, 1):
            comb.add(RollupParts(source=s, idle=True, offset=-1))  # never had a record
        return comb

    comb = quiet()
    assert comb.idle_offsets() == {0: -1, 1: -1}
    comb.add(env(0, [part("a", 0, 0), part("a", 1, 0)], minute=2))  # source 0 woke with the backlog
    assert comb.watermark() == T0 + 120, "by the announcements alone, source 1 is left out"
    assert comb.close(backlog={1}) == [], "source 1's partition holds records: it is waited for"
    comb.add(env(1, [part("a", 0, 1, requests=5)], minute=1))
    assert [(r.requests, r.parts, r.late) for r in comb.close()] == [(8, 2, False)]
    assert comb.counts["late_parts"] == 0

    cut = quiet()  # the same envelopes closed by the announcements alone: source 1's part is late
    cut.add(env(0, [part("a", 0, 0), part("a", 1, 0)], minute=2))
    assert [r.requests for r in cut.close()] == [3, 3]
    assert [(r.late, r.requests) for r in cut.add(env(1, [part("a", 0, 1, requests=5)], minute=1))] == [(True, 5)]


def test_idle_offsets_are_sent_with_the_idle_envelope_and_kept_in_the_table() -> None:
    """Only the envelope that says idle carries the offset; a restored combiner remembers it."""
    sent = envelopes(3, [part("a", m, 3) for m in range(300)], T0 + 600, 2, everyone=True, idle=True, offset=41)
    assert [(e.idle, e.offset) for _, e in sent if e.idle or e.offset is not None] == [(True, 41)] * 2
    comb = RollupCombiner(4, part=1)
    for _, e in sent:
        comb.add(e)
    after = RollupCombiner(4, part=1)
    for key, raw in comb.take_changes():
        if raw is not None:
            after.restore(key, raw)
    assert after.idle_offsets() == comb.idle_offsets() == {3: 41}
    after.add(env(3, minute=11))
    assert after.idle_offsets() == {}, "a source that sends again is awake"


def test_a_combiner_resumes_from_its_table() -> None:
    """Restored from take_changes(), a combiner closes what one that never stopped would."""
    whole, before = RollupCombiner(2, part=1), RollupCombiner(2, part=1)
    a, b = env(0, [part("a", 0, 0), part("b", 1, 0)], minute=2), env(1, [part("a", 0, 1)], minute=1)
    table: dict[str, bytes] = {}
    for c in (whole, before):
        c.add(a)
        c.add(b)
        c.close()
    for key, raw in before.take_changes():
        if raw is None:
            table.pop(key, None)
        else:
            table[key] = raw
    after = RollupCombiner(2, part=1)
    for key, raw in table.items():
        after.restore(key, raw)
    last = env(1, [part("b", 1, 1)], minute=2)
    assert whole.add(last) == after.add(last) == []
    assert whole.close() == after.close()
    assert after.counts == whole.counts


def test_a_sources_watermark_follows_every_part_it_covers() -> None:
    """Parts beyond one record are split; only the last envelope of a target carries the watermark."""
    many = [part("a", m % 5, 0) for m in range(600)]
    out = envelopes(0, many, T0 + 300, 3, everyone=True)
    target = partition_for("a", 3)
    mine = [e for q, e in out if q == target]
    assert [len(e.parts) for e in mine] == [256, 256, 88]
    assert [e.watermark for e in mine] == [None, None, T0 + 300]
    assert sorted(q for q, e in out if q != target) == sorted(set(range(3)) - {target}), "the others: watermark only"
    assert all(e.watermark == T0 + 300 and not e.parts for q, e in out if q != target)
    assert [q for q, _ in envelopes(0, many[:1], T0 + 60, 3, everyone=False)] == [target]


def test_events_older_than_their_partitions_watermark_become_late_rows_not_drops() -> None:
    """A partition's late events are late parts (ids of their own, stable over a restart), passed through."""
    core, table = MinuteRollups(part=1), {}
    core.add("a", "10.0.0.1", T0 + 5, status=200, latency_ms=1.0)
    [closed] = core.close(T0 + 120)
    core.add("a", "10.0.0.2", T0 + 7, status=503, latency_ms=2.0)
    [first] = core.take_late()
    assert (first.late, first.part, first.requests, first.errors, core.late) == (True, 1, 1, 1, 1)
    for key, raw in core.take_changes():
        if raw is not None:
            table[key] = raw
    restored = MinuteRollups(part=1)
    for key, raw in table.items():
        restored.restore(key, raw)
    for c in (core, restored):
        c.add("a", "10.0.0.3", T0 + 9, status=200, latency_ms=3.0)
    [second], [again] = core.take_late(), restored.take_late()
    assert second.id == again.id, "the same late part after a restart has the same id"
    assert len({closed.id, first.id, second.id}) == 3, "no late part replaces another row"
    comb = RollupCombiner(2)
    assert comb.add(env(1, [first], minute=2)) == [first]
    assert (comb.counts["late_parts"], comb.counts["late_requests"], comb.open_minutes) == (1, 1, 0)


@given(hist=st.dictionaries(st.integers(0, 400), st.integers(1, 50), max_size=30),
       top=st.floats(0, 1e5, allow_nan=False))
def test_quantiles_in_one_pass_equal_each_quantile_alone(hist: dict[int, int], top: float) -> None:
    qs = (0.0, 0.5, 0.95, 1.0)
    assert hist_quantiles(hist, qs, top) == [hist_quantile(hist, q, top) for q in qs]
