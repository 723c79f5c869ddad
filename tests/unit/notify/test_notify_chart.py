"""The anomaly chart: a PNG of the metric against its baseline band."""

from __future__ import annotations

import struct
from datetime import timedelta

import pytest
from notify_helpers import TS

from agents.notify.chart import anomaly_chart


def test_chart_is_a_png_of_the_requested_size() -> None:
    """Rendering gives PNG bytes of the requested pixel size."""
    times = [TS + timedelta(minutes=i) for i in range(60)]
    values = [10.0 + (40.0 if i == 45 else 0.0) for i in range(60)]
    png = anomaly_chart(
        times,
        values,
        baseline=[10.0] * 60,
        band_low=[8.0] * 60,
        band_high=[12.0] * 60,
        anomaly_at=times[45],
        title="error_rate on acme",
        width_px=600,
        height_px=260,
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (600, 260)


def test_mismatched_series_are_refused() -> None:
    """Series of different lengths are a caller bug, reported as such."""
    with pytest.raises(ValueError, match="same length"):
        anomaly_chart([TS], [1.0, 2.0], baseline=[1.0], band_low=[1.0], band_high=[1.0], anomaly_at=TS)
