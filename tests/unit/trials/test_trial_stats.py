"""Conversion stats by start week and plan, against a brute-force oracle."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agents.trials import ConversionStats, cohort_week
from schemas.results import stable_id
from schemas.trials import TrialState, TrialStatus

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday


def _state(i: int, start_h: int, plan: str, *, status: TrialStatus, conv_h: int | None, version: int) -> TrialState:
    started = T0 + timedelta(hours=start_h)
    return TrialState(
        id=stable_id(i, version),
        trial_id=f"tr{i}",
        tenant_id=f"t{i}",
        plan=plan,
        status=status,
        previous=None,
        version=version,
        started_at=started,
        ends_at=started + timedelta(days=14),
        converted_at=None if conv_h is None else started + timedelta(hours=conv_h),
        ts=started,
    )


def test_cohort_week_is_monday() -> None:
    """Any day of a week maps to its Monday."""
    assert cohort_week(date(2026, 1, 11)) == date(2026, 1, 5)
    assert cohort_week(date(2026, 1, 5)) == date(2026, 1, 5)


trials = st.lists(
    st.tuples(st.integers(0, 24 * 40), st.sampled_from(["basic", "pro"]), st.one_of(st.none(), st.integers(1, 400))),
    max_size=60,
)


@given(trials)
def test_stats_match_oracle_with_duplicates_and_reordering(spec: list[tuple[int, str, int | None]]) -> None:
    """Redelivered and out-of-order state records count once; numbers equal a direct computation."""
    records = []
    for i, (start_h, plan, conv_h) in enumerate(spec):
        records.append(_state(i, start_h, plan, status=TrialStatus.TRIALING, conv_h=None, version=0))
        if conv_h is not None:
            records.append(_state(i, start_h, plan, status=TrialStatus.CONVERTED, conv_h=conv_h, version=1))
    shuffled = records[::-1] + records[: len(records) // 2]
    rows = {(r.week, r.plan): r for r in ConversionStats().update_many(shuffled).rows()}
    oracle: dict[tuple[date, str], list[int | None]] = {}
    for start_h, plan, conv_h in spec:
        week = cohort_week((T0 + timedelta(hours=start_h)).date())
        oracle.setdefault((week, plan), []).append(conv_h)
    assert set(rows) == set(oracle)
    for key, convs in oracle.items():
        done = [c / 24 for c in convs if c is not None]
        assert rows[key].started == len(convs)
        assert rows[key].converted == len(done)
        assert abs(rows[key].conversion_rate - len(done) / len(convs)) < 1e-12
        if done:
            assert rows[key].avg_days_to_convert is not None
            assert abs(rows[key].avg_days_to_convert - sum(done) / len(done)) < 1e-9
        else:
            assert rows[key].avg_days_to_convert is None
