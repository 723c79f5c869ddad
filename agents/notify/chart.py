"""The inline chart of an anomaly alert: the metric against its baseline band, as PNG bytes.

The anomaly agent puts the series into the alert (`Notification.chart`: the stream's recent
points with their baseline and band); `notification_chart` is the notifier's `ChartSource`
that draws it. Rendering uses matplotlib's Agg canvas: headless, no display, no pyplot.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

from schemas.notify import Notification

__all__ = ["anomaly_chart", "notification_chart"]


def anomaly_chart(
    times: Sequence[datetime],
    values: Sequence[float],
    *,
    baseline: Sequence[float],
    band_low: Sequence[float],
    band_high: Sequence[float],
    anomaly_at: datetime,
    title: str = "",
    width_px: int = 600,
    height_px: int = 260,
) -> bytes:
    """Render with the Agg backend on a private Figure (no pyplot global state; thread-safe)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not (len(times) == len(values) == len(baseline) == len(band_low) == len(band_high)):
        raise ValueError("times, values, baseline and band must have the same length")
    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # Matplotlib's date axis counts days since 1970-01-01 (its default epoch).
    x = [t.timestamp() / 86_400 for t in times]
    ax.fill_between(x, band_low, band_high, color="#9ecae1", alpha=0.5, label="expected band", linewidth=0)
    ax.plot(x, baseline, color="#3182bd", linewidth=1, linestyle="--", label="baseline")
    ax.plot(x, values, color="#222222", linewidth=1.4, label="value")
    ax.axvline(anomaly_at.timestamp() / 86_400, color="#de2d26", linewidth=1.2, label="anomaly")
    ax.xaxis_date()
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    ax.tick_params(labelsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def notification_chart(n: Notification) -> bytes | None:
    """The PNG for an alert that carries a chart series; None for one without (nothing to draw)."""
    series = n.chart
    if series is None:
        return None
    pts = series.points
    return anomaly_chart(
        [p.ts for p in pts],
        [p.value for p in pts],
        baseline=[p.expected for p in pts],
        band_low=[p.low for p in pts],
        band_high=[p.high for p in pts],
        anomaly_at=series.marker,
        title=series.title,
    )
