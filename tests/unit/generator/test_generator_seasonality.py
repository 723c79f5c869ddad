"""Daily and weekly profiles: bounded, peaking in the tenant's afternoon, lower on weekends."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pipeline.devstack.generator.seasonality import diurnal, minute_profile


@given(
    hours=st.lists(st.floats(0, 24), min_size=1, max_size=50),
    peak=st.floats(0, 24),
    floor=st.floats(0, 0.5),
)
def test_diurnal_stays_between_floor_and_one(hours: list[float], peak: float, floor: float) -> None:
    """The curve never leaves [night_floor, 1]."""
    values = diurnal(np.asarray(hours), peak, floor)
    assert np.all(values >= floor - 1e-12)
    assert np.all(values <= 1 + 1e-12)


def test_profile_peaks_in_local_afternoon() -> None:
    """For Tokyo (UTC+9) with a 15:00 peak, the busiest UTC minute of a day is 06:00."""
    start = datetime(2026, 1, 6, tzinfo=UTC)  # a Tuesday
    profile = minute_profile(start, 24 * 60, "Asia/Tokyo", peak_hour=15.0, night_floor=0.1, weekend_factor=0.5)
    assert int(np.argmax(profile)) == 6 * 60


def test_profile_is_lower_on_local_weekend() -> None:
    """Saturday in New York is `weekend_factor` times the Friday at the same local hour."""
    friday = datetime(2026, 1, 9, 19, tzinfo=UTC)  # 14:00 in New York
    saturday = datetime(2026, 1, 10, 19, tzinfo=UTC)
    fri = minute_profile(friday, 1, "America/New_York", peak_hour=14.0, night_floor=0.1, weekend_factor=0.5)
    sat = minute_profile(saturday, 1, "America/New_York", peak_hour=14.0, night_floor=0.1, weekend_factor=0.5)
    assert np.allclose(sat, 0.5 * fri)


def test_local_date_decides_the_weekend() -> None:
    """Sunday 03:00 UTC is still Saturday evening in Los Angeles: the weekend factor applies."""
    sunday_utc = datetime(2026, 1, 11, 3, tzinfo=UTC)
    monday_utc = datetime(2026, 1, 13, 3, tzinfo=UTC)  # Monday 19:00 in Los Angeles
    sat_evening = minute_profile(
        sunday_utc, 1, "America/Los_Angeles", peak_hour=14.0, night_floor=0.1, weekend_factor=0.5
    )
    mon_evening = minute_profile(
        monday_utc, 1, "America/Los_Angeles", peak_hour=14.0, night_floor=0.1, weekend_factor=0.5
    )
    assert np.allclose(sat_evening, 0.5 * mon_evening)
