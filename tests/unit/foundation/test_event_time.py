"""The event-time admission rule: no lone event drags a partition's time, honest time still advances."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.runtime.clock import EventClock
from pipeline.runtime.event_time import LeadRule, Witnesses, admit

LEAD = 3_600.0
RULE = LeadRule(max_lead_s=LEAD, quorum=2)
T0 = 1_780_000_000.0  # 2026-05-28
Y2099 = 4_070_908_800.0  # 2099-01-01


def run(batches: list[list[tuple[float, str]]], rule: LeadRule = RULE,
        wall: float | None = None) -> tuple[list[float | None], list[tuple[float, str]]]:
    """Admit `batches` on one partition: the partition's time after each, and every refused event."""
    clock = EventClock(0.0, rule)
    times: list[float | None] = []
    refused: list[tuple[float, str]] = []
    for batch in batches:
        verdict = clock.admit("p", [t for t, _ in batch], [k for _, k in batch], wall)
        refused += [batch[r.index] for r in verdict.refused]
        assert sorted([*verdict.accepted, *(r.index for r in verdict.refused)]) == list(range(len(batch)))
        times.append(clock.now("p"))
    return times, refused


def test_one_far_future_event_among_tenants_is_refused_with_its_reason() -> None:
    """Would fail if an event dated 2099 became the partition's time (the reported trial-expiry bug)."""
    memo = Witnesses()
    first = admit(RULE, memo, None, [T0, T0 + 60], ["acme", "beta"])
    verdict = admit(RULE, memo, first.newest, [T0 + 120, Y2099, T0 + 180], ["acme", "evil", "beta"])
    assert verdict.accepted == [0, 2]
    assert verdict.newest == T0 + 180
    (refusal,) = verdict.refused
    assert refusal.index == 1
    assert refusal.reason.startswith("too far ahead: event time 2099-01-01T00:00:00Z")
    assert "TW_MAX_EVENT_LEAD_S=3600" in refusal.reason


def test_a_far_event_is_refused_even_in_the_partitions_first_batch() -> None:
    """Would fail if a partition with no time yet took its first batch's maximum (the 2099 request first)."""
    times, refused = run([[(Y2099, "evil"), (T0, "acme"), (T0 + 1, "acme"), (T0 + 2, "beta")]])
    assert times == [T0 + 2]
    assert refused == [(Y2099, "evil")]


def test_a_bit_flipped_year_of_a_lone_tenant_is_refused() -> None:
    """Would fail if a partition of one tenant let one flipped timestamp (2026 → 2066) jump its time."""
    flipped = T0 + 40 * 365 * 86_400
    times, refused = run([[(T0, "acme"), (T0 + 1, "acme")], [(flipped, "acme")], [(T0 + 2, "acme")]])
    assert times == [T0 + 1, T0 + 1, T0 + 2]
    assert refused == [(flipped, "acme")]


def test_two_tenants_resuming_after_a_gap_move_time_together() -> None:
    """Would fail if a replay resuming after a day's gap lost its events or kept the old time."""
    gap = T0 + 86_400
    times, refused = run([[(T0, "acme"), (T0, "beta")], [(gap, "acme"), (gap + 5, "beta"), (gap + 9, "acme")]])
    assert times == [T0, gap + 9]
    assert refused == []


def test_a_jump_across_batches_takes_the_first_witness_as_evidence() -> None:
    """Would fail if a refused event never counted towards a later jump (time stuck for good)."""
    gap = T0 + 86_400
    times, refused = run([[(T0, "acme"), (T0, "beta")], [(gap, "acme")], [(gap + 5, "beta")], [(gap + 6, "acme")]])
    assert times == [T0, T0, gap + 5, gap + 6]
    assert refused == [(gap, "acme")]  # dead-lettered with its reason, for replay


def test_one_tenant_cannot_vouch_for_itself_on_a_shared_partition() -> None:
    """Would fail if one tenant's many far events (not just one) could fire other tenants' timers."""
    times, refused = run([[(T0, "acme"), (T0, "beta")], [(Y2099, "evil")] * 5, [(T0 + 10, "beta")]])
    assert times == [T0, T0, T0 + 10]
    assert len(refused) == 5


def test_a_quiet_partition_in_step_with_its_peers_follows_its_lone_tenant() -> None:
    """Would fail if a sparse partition (errors, billing) whose one tenant speaks again after a gap
    lost that event although the worker's other partitions are already there."""
    clock = EventClock(0.0, RULE)
    clock.admit("errors-1", [T0, T0], ["acme", "beta"])
    for p in ("requests-0", "requests-1", "requests-2"):
        clock.admit(p, [T0 + 86_400, T0 + 86_400 + 1], ["acme", "beta"])
    verdict = clock.admit("errors-1", [T0 + 86_400 + 60], ["acme"])
    assert verdict.refused == []
    assert clock.now("errors-1") == T0 + 86_400 + 60


def test_a_lone_far_event_first_on_a_fresh_partition_is_refused_when_peers_have_a_time() -> None:
    """Would fail if a partition's first batch (after a restart, a rebalance) could be one 2099 event
    that becomes its time, while the worker's other partitions show the real time."""
    clock = EventClock(0.0, RULE)
    clock.admit("billing-0", [T0, T0 + 1], ["acme", "beta"])
    assert [r.index for r in clock.admit("billing-1", [Y2099], ["evil"]).refused] == [0]
    assert clock.now("billing-1") is None
    assert clock.admit("billing-1", [T0 + 5], ["gamma"]).accepted == [0]
    assert clock.now("billing-1") == T0 + 5


def test_the_wall_clock_bounds_live_input_whatever_vouches() -> None:
    """Would fail if agreeing producers with skewed clocks could push a live partition past the wall clock."""
    rule = LeadRule(max_lead_s=LEAD, quorum=2, max_clock_skew_s=300)
    times, refused = run([[(T0, "acme"), (T0 + 301, "beta"), (T0 + 400, "acme"), (T0 + 100, "beta")]], rule, wall=T0)
    assert times == [T0 + 100]
    assert [t for t, _ in refused] == [T0 + 301, T0 + 400]


def test_live_the_wall_clock_vouches_for_a_partition_waking_up() -> None:
    """Would fail if a live partition's first event after a quiet night (longer than the lead) were
    dead-lettered although the wall clock shows that time."""
    rule = LeadRule(max_lead_s=LEAD, quorum=2, max_clock_skew_s=300)
    morning = T0 + 10 * 3_600
    times, refused = run([[(T0, "acme"), (T0, "beta")], [(morning, "acme")]], rule, wall=morning + 1)
    assert (times, refused) == ([T0, morning], [])
    times, refused = run([[(T0, "acme"), (T0, "beta")], [(morning, "acme")]], rule, wall=T0 + 60)
    assert (times, refused) == ([T0, T0], [(morning, "acme")])


def test_without_a_rule_the_clock_follows_the_newest_event() -> None:
    """Would fail if a clock without a rule (internal inputs, the anomaly agent's own clocks) refused anything."""
    times, refused = run([[(T0, "acme")], [(Y2099, "evil")]], LeadRule(max_lead_s=None))
    assert times == [T0, Y2099]
    assert refused == []


def test_clears_only_a_batch_the_rule_would_take_whole() -> None:
    """Would fail if the runtime's fast path skipped the rule for a batch that needs it."""
    clock = EventClock(0.0, RULE)
    assert not clock.clears("p", T0)  # no time yet
    clock.admit("p", [T0], ["acme"])
    assert clock.clears("p", T0 + LEAD)
    assert not clock.clears("p", T0 + LEAD + 1)
    clock.note("p", ["acme", "beta"])  # a batch taken whole still teaches the partition its tenants
    clock.observe("p", T0 + 1)
    # two tenants seen: one of them alone cannot jump, however many of its events agree
    assert [r.index for r in clock.admit("p", [Y2099, Y2099], ["acme", "acme"]).refused] == [0, 1]


# -- properties ------------------------------------------------------------------------------
tenants = st.sampled_from(["acme", "beta", "gamma"])
steps = st.floats(min_value=0, max_value=LEAD, allow_nan=False)


@st.composite
def honest_segments(draw: st.DrawFn) -> list[list[tuple[float, str]]]:
    """Batches of honest traffic: each starts after any gap (days, or none) and has two tenants or more."""
    t, out = T0, []
    for _ in range(draw(st.integers(1, 6))):
        t += draw(st.sampled_from([0.0, 60.0, LEAD, 5 * LEAD, 30 * 86_400.0]))
        batch = []
        for who in ["acme", "beta", *draw(st.lists(tenants, max_size=8))]:
            t += draw(steps)
            batch.append((t, who))
        out.append(draw(st.permutations(batch)))  # arrival order is not time order
    return out


@settings(max_examples=200, deadline=None)
@given(honest_segments(), st.floats(min_value=T0 - 86_400 * 365, max_value=Y2099 + 86_400 * 365), st.data())
def test_no_single_event_moves_time_more_than_the_lead(batches: list[list[tuple[float, str]]], odd: float,
                                                      data: st.DataObject) -> None:
    """Would fail if one event, at any time, anywhere in honest traffic, put time more than the lead
    past the newest honest event."""
    b = data.draw(st.integers(0, len(batches) - 1))
    pos = data.draw(st.integers(0, len(batches[b])))
    spiked = [list(x) for x in batches]
    spiked[b].insert(pos, (odd, "evil"))
    times, _ = run(spiked)
    newest_honest = float("-inf")
    for batch, now in zip(batches, times, strict=True):
        newest_honest = max(newest_honest, *(t for t, _ in batch))
        assert now is not None
        assert now <= newest_honest + LEAD


@settings(max_examples=200, deadline=None)
@given(honest_segments())
def test_honest_traffic_with_gaps_is_all_admitted(batches: list[list[tuple[float, str]]]) -> None:
    """Would fail if honest batches of several tenants, after gaps of any length, lost an event or time."""
    times, refused = run(batches)
    assert refused == []
    assert times == [max(t for b in batches[:i + 1] for t, _ in b) for i in range(len(batches))]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 1.0, 600.0, 5 * LEAD]), st.integers(2, 6)), min_size=1, max_size=6))
def test_a_lone_tenants_partition_follows_it_across_gaps(plan: list[tuple[float, int]]) -> None:
    """Would fail if a partition of one tenant stalled after a gap although its events agree on the time."""
    t, batches = T0, []
    for gap, n in plan:
        t += gap
        batches.append([(t + i, "acme") for i in range(n)])
        t += n
    times, refused = run(batches)
    assert refused == []
    assert times[-1] == batches[-1][-1][0]


def test_settings_put_the_rule_in_force_and_zero_turns_the_lead_off() -> None:
    """Would fail if TW_MAX_EVENT_LEAD_S=0 (documented: off) still refused far events, or the defaults
    drifted from the docs."""
    from pipeline.settings import Settings

    assert Settings().lead_rule == LeadRule(max_lead_s=21_600.0, quorum=2, max_clock_skew_s=None)
    off = Settings(max_event_lead_s=0).lead_rule
    assert off.max_lead_s is None
    assert not off.active
    times, refused = run([[(T0, "acme"), (T0, "beta")], [(Y2099, "evil")]], off)
    assert (times, refused) == ([T0, Y2099], [])


@settings(max_examples=200, deadline=None)
@given(honest_segments(), st.lists(st.sampled_from("abc"), min_size=6, max_size=6),
       st.floats(min_value=T0, max_value=Y2099), st.integers(1, 6), st.sampled_from("abc"))
def test_a_lone_far_event_moves_no_partition_of_a_worker_even_its_first_batch(
        batches: list[list[tuple[float, str]]], owners: list[str], odd: float, when: int, where: str) -> None:
    """Would fail if one event sent alone (after a restart, to a partition with no time yet) put any
    partition's time more than the lead past the newest honest event the worker has seen."""
    clock = EventClock(0.0, RULE)
    plan = [(owners[i], b) for i, b in enumerate(batches)]
    plan.insert(min(when, len(plan)), (where, [(odd, "evil")]))
    newest_honest = float("-inf")
    for partition, batch in plan:
        clock.admit(partition, [t for t, _ in batch], [k for _, k in batch])
        newest_honest = max(newest_honest, *(t for t, k in batch if k != "evil"), float("-inf"))
        for p in "abc":
            now = clock.now(p)
            assert now is None or now <= newest_honest + LEAD


def test_unrelated_far_events_of_two_tenants_do_not_agree() -> None:
    """Would fail if a remembered 2099 event and, much later, another tenant's bit flip to 2066
    counted as two tenants agreeing on a jump."""
    flipped = T0 + 40 * 365 * 86_400
    times, refused = run([[(T0, "acme"), (T0, "beta")], [(Y2099, "evil")], [(T0 + 5, "acme")],
                          [(flipped, "beta")], [(T0 + 9, "acme")]])
    assert times == [T0, T0, T0 + 5, T0 + 5, T0 + 9]
    assert refused == [(Y2099, "evil"), (flipped, "beta")]
