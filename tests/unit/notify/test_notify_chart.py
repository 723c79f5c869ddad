"""The anomaly chart: a PNG of the metric against its baseline band, and the notifier's chart source."""

from __future__ import annotations

import asyncio
import io
import logging
import struct
from datetime import timedelta
from email.message import EmailMessage

import pytest
from notify_helpers import TS, notification

from agents.notify import Notifier
from agents.notify.chart import anomaly_chart, notification_chart
from pipeline.adapters.smtp import MemoryMailer
from schemas.notify import Channel, ChartPoint, ChartSeries, DeliveryStatus, Notification, Severity

FROM = "tenantwatch <alerts@tenantwatch.local>"


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


def _alert_with_series(n_points: int = 48) -> Notification:
    points = tuple(
        ChartPoint(ts=TS + timedelta(hours=i - n_points + 1), value=100.0 + (300.0 if i == n_points - 1 else i % 5),
                   expected=100.0, low=90.0, high=110.0)
        for i in range(n_points)
    )
    chart = ChartSeries(title="request_volume of acme", marker=points[-1].ts, points=points)
    return notification("anomaly_alert", id="alert-1", severity=Severity.CRITICAL, chart=chart)


def _parts(msg: EmailMessage) -> tuple[str, list[EmailMessage]]:
    html = next(p for p in msg.walk() if p.get_content_type() == "text/html")
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    return str(html.get_content()), images


def test_chart_source_draws_the_alert_series_as_a_png() -> None:
    """`notification_chart` turns the alert's series into PNG bytes that PIL reads back."""
    from PIL import Image

    png = notification_chart(_alert_with_series())
    assert png is not None
    assert png.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        assert img.size == (600, 260)


def test_chart_source_has_nothing_to_draw_without_a_series() -> None:
    """An alert without a series (no history kept) gives no chart, not an error."""
    assert notification_chart(notification("anomaly_alert")) is None


def test_notifier_mails_the_chart_inline_under_the_cid_the_html_references() -> None:
    """With the real chart source: an image/png part whose Content-ID the HTML names as cid:."""
    mailer = MemoryMailer()
    d = asyncio.run(Notifier(mailer, FROM, charts=notification_chart).deliver(_alert_with_series()))
    assert d.status is DeliveryStatus.SENT
    html, images = _parts(mailer.messages[0])
    assert len(images) == 1
    cid = str(images[0]["Content-ID"]).strip("<>")
    assert f'src="cid:{cid}"' in html
    assert images[0].get_content().startswith(b"\x89PNG")
    text = mailer.messages[0].get_body(preferencelist=("plain",))
    assert text is not None
    assert "critical" in text.get_content().lower()


def test_a_failing_chart_is_logged_and_the_mail_goes_out_without_it(caplog: pytest.LogCaptureFixture) -> None:
    """A chart source that raises never stops the mail: sent, no image, no dangling cid, one warning."""

    def broken(n: Notification) -> bytes:
        raise RuntimeError("no fonts today")

    mailer = MemoryMailer()
    with caplog.at_level(logging.WARNING, logger="agents.notify.notifier"):
        d = asyncio.run(Notifier(mailer, FROM, charts=broken).deliver(_alert_with_series()))
    assert d.status is DeliveryStatus.SENT
    html, images = _parts(mailer.messages[0])
    assert images == []
    assert "cid:" not in html
    assert any("alert-1" in r.getMessage() and r.exc_info for r in caplog.records)


def test_only_anomaly_alert_mails_ask_for_a_chart() -> None:
    """Other kinds and webhook alerts never call the chart source."""
    asked: list[str] = []

    def source(n: Notification) -> bytes | None:
        asked.append(n.id)
        return None

    notifier = Notifier(MemoryMailer(), FROM, charts=source)
    assert asyncio.run(notifier.chart(notification("welcome"))) is None
    webhook = _alert_with_series().model_copy(update={"channel": Channel.WEBHOOK})
    assert asyncio.run(notifier.chart(webhook)) is None
    assert asked == []
