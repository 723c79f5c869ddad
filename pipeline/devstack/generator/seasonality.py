"""Diurnal and weekly traffic profiles in a tenant's local time, as multipliers of the peak."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

__all__ = ["diurnal", "local_offset_hours", "minute_profile"]

FloatArray = npt.NDArray[np.float64]


def diurnal(local_hour: FloatArray, peak_hour: float, night_floor: float, sharpness: float = 2.0) -> FloatArray:
    """Smooth daily curve: 1.0 at `peak_hour`, `night_floor` twelve hours away.

    >>> float(diurnal(np.array([15.0]), 15.0, 0.1)[0])
    1.0
    >>> round(float(diurnal(np.array([3.0]), 15.0, 0.1)[0]), 6)
    0.1
    """
    wave = (1.0 + np.cos(2.0 * np.pi * (local_hour - peak_hour) / 24.0)) / 2.0
    return night_floor + (1.0 - night_floor) * wave**sharpness


@lru_cache(maxsize=1 << 14)
def local_offset_hours(timezone: str, at: datetime) -> float:
    """UTC offset of `timezone` at the aware instant `at`, in hours (DST included)."""
    offset = at.astimezone(ZoneInfo(timezone)).utcoffset()
    return (offset or timedelta()).total_seconds() / 3600.0


def minute_profile(
    start: datetime,
    minutes: int,
    timezone: str,
    *,
    peak_hour: float,
    night_floor: float,
    weekend_factor: float,
) -> FloatArray:
    """Activity (0..1 of peak) for each of `minutes` minutes from the aware UTC `start`.

    The offset is taken once at `start`: chunks are an hour long, so a DST switch shifts the
    curve at the next chunk, which is fine for synthetic traffic.
    """
    offset = local_offset_hours(timezone, start)
    base = start.hour + start.minute / 60.0 + offset
    local_hours = base + np.arange(minutes) / 60.0
    # The local date may be the UTC date's neighbour: floor() counts the days crossed.
    weekday = (start.weekday() + np.floor(local_hours / 24.0)) % 7
    factor = np.where(weekday >= 5, weekend_factor, 1.0)
    return diurnal(local_hours % 24.0, peak_hour, night_floor) * factor
