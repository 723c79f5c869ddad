"""Anomaly alert mails on the real stack carry their chart: metric points → worker (anomaly + notify)
→ aiosmtpd. The PNG is inline under a Content-ID the HTML names, and it survives a worker crash.

One worker and one SMTP sink serve the module; each test uses its own tenant. The restart test
kills the worker, so it runs last.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from faust.serializers import codecs

from agents.anomaly.alerts import SeriesRing
from agents.anomaly.state_codec import RING_CODEC, register_codecs
from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.devstack.smtp_sink import SmtpSink
from pipeline.runtime.topics import Topic
from pipeline.settings import Settings
from schemas.anomaly import BaselineBand, MetricName, MetricPoint, to_datetime
from schemas.notify import CHART_MAX_POINTS, Notification
from tests.conftest import WorkerProcess, wait_for
from tests.integration.anomaly.anomaly_helpers import HOUR, T0, produce, read_topic, series

pytestmark = pytest.mark.integration

M = MetricName


@pytest.fixture(scope="module")
def stack(kafka: str, session_dir: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Settings, WorkerProcess, SmtpSink]]:
    prefix = f"nc{uuid.uuid4().hex[:8]}"
    with SmtpSink(tmp_path_factory.mktemp("mail")) as sink:
        settings = Settings(broker=kafka, topic_prefix=prefix, app_id=f"tw-{prefix}", data_dir=session_dir / prefix,
                            clickhouse_dsn=f"chdb://{session_dir / 'clickhouse'}", partitions=4,
                            smtp_port=sink.port)
        ensure_topics(settings)
        worker = WorkerProcess(settings, capabilities="anomaly,notify").start()
        try:
            yield settings, worker, sink
        finally:
            worker.stop()


def publish(settings: Settings, points: list[MetricPoint]) -> None:
    produce(settings, Topic.METRICS, ((p.tenant, p) for p in sorted(points, key=lambda p: p.ts)))


def alert_mails(sink: SmtpSink, tenant: str) -> list[EmailMessage]:
    return [m for m in sink.messages()
            if m["X-Tenantwatch-Tenant"] == tenant and m["X-Tenantwatch-Kind"] == "anomaly_alert"]


def wait_for_alert_mail(sink: SmtpSink, worker: WorkerProcess, tenant: str) -> EmailMessage:
    mails = wait_for(lambda: alert_mails(sink, tenant), timeout=180,
                     what=lambda: f"an anomaly alert mail for {tenant} (worker log: {worker.log})")
    return mails[0]


def alert_of(settings: Settings, message_id: str) -> Notification:
    """The notification on the topic behind a mail (its id is the Message-ID's local part)."""
    nid = message_id.strip("<>").split("@")[0]
    found = [n for n in read_topic(settings, Topic.NOTIFICATIONS, Notification) if n.id == nid]
    assert found, f"notification {nid} on the topic"
    return found[0]


def inline_chart(mail: EmailMessage) -> tuple[bytes, str, str]:
    """(PNG bytes, its Content-ID without brackets, the HTML part's text); asserts the MIME shape."""
    html_parts = [p for p in mail.walk() if p.get_content_type() == "text/html"]
    images = [p for p in mail.walk() if p.get_content_type() == "image/png"]
    assert len(html_parts) == 1, "one HTML part"
    assert len(images) == 1, f"one inline PNG, have {[p.get_content_type() for p in mail.walk()]}"
    related = [p for p in mail.walk() if p.get_content_type() == "multipart/related"]
    assert related, "the HTML and its image are multipart/related"
    png = images[0].get_content()
    assert isinstance(png, bytes)
    return png, str(images[0]["Content-ID"]).strip("<>"), str(html_parts[0].get_content())


def test_alert_mail_carries_an_inline_chart_and_the_numbers(stack):
    """A volume spike mails an alert whose HTML shows a decodable PNG by cid, plus value, band and σ."""
    from PIL import Image

    settings, worker, sink = stack
    tenant = f"chart-{uuid.uuid4().hex[:6]}"
    publish(settings, series(tenant, M.REQUEST_VOLUME, 64, 800, seed=5, effect=dict.fromkeys(range(60, 63), 4.0)))
    mail = wait_for_alert_mail(sink, worker, tenant)

    png, cid, html = inline_chart(mail)
    assert f'src="cid:{cid}"' in html
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as img:
        img.load()  # decodes every scanline: a truncated or corrupt PNG raises here
        assert (img.format, img.size) == ("PNG", (600, 260))

    n = alert_of(settings, str(mail["Message-ID"]))
    assert n.chart is not None
    assert 2 <= len(n.chart.points) <= CHART_MAX_POINTS
    assert n.chart.points[-1].ts == n.ts, "the series ends at the point that raised the alert"
    assert n.chart.marker == to_datetime((T0 + 60 * HOUR).timestamp()), "marked where the spike began"
    text = mail.get_body(preferencelist=("plain",))
    assert text is not None
    body = text.get_content()
    for name in ("value", "expected", "band", "deviation", "severity"):
        assert str(n.variables[name]) in body, f"{name} in the text part"
        assert str(n.variables[name]).replace("&", "&amp;") in html, f"{name} in the HTML part"


def ring_in_changelog(settings: Settings, key: str) -> SeriesRing | None:
    """The newest ring of `key` in the chart table's changelog (Faust: `<app id>-<table>-changelog`,
    key as JSON, value in the `tw-series-ring` codec)."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    register_codecs()
    name = f"{settings.app_id}-{settings.app_id}-anomaly-chart-changelog"
    consumer = KafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False)
    raw_key = json.dumps(key).encode()
    found: SeriesRing | None = None
    try:
        parts = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        if not parts:
            return None
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for messages in consumer.poll(timeout_ms=5000).values():
                for msg in messages:
                    if msg.key == raw_key and msg.value is not None:
                        found = codecs.loads(RING_CODEC, msg.value)
    finally:
        consumer.close()
    return found


def bands_of(settings: Settings, tenant: str) -> list[Any]:
    return [b for b in read_topic(settings, Topic.BASELINES, BaselineBand) if b.tenant == tenant]


def test_chart_history_survives_a_worker_crash(stack):
    """Points scored before a kill -9 are still drawn in the chart of an alert raised after the restart."""
    from PIL import Image

    settings, worker, sink = stack
    tenant = f"crash-{uuid.uuid4().hex[:6]}"
    points = series(tenant, M.REQUEST_VOLUME, 76, 800, seed=9, effect=dict.fromkeys(range(72, 76), 4.0))
    publish(settings, points[:72])
    last = points[71].ts
    wait_for(lambda: any(b.ts == last for b in bands_of(settings, tenant)), timeout=150,
             what="the band of the last point before the crash")
    scored = {b.ts for b in bands_of(settings, tenant)}  # the points kept in the ring (warm-up ones have no band)
    # Kill only once the ring holding the last point is durable in its changelog: Faust may commit
    # offsets before its buffered changelog writes are out (its flush gives up after 0.1 s), so a
    # committed offset is no proof, and a kill before that would test Faust, not our recovery.
    key = f"{tenant}|{M.REQUEST_VOLUME.value}"
    wait_for(lambda: (r := ring_in_changelog(settings, key)) is not None and r.last_ts == last.timestamp(),
             timeout=60, what="the ring with the last pre-crash point in the changelog")
    worker.stop(kill=True)
    worker.start()
    publish(settings, points[72:])
    mail = wait_for_alert_mail(sink, worker, tenant)

    n = alert_of(settings, str(mail["Message-ID"]))
    assert n.chart is not None
    restart = points[72].ts
    before = {p.ts for p in n.chart.points if p.ts < restart}
    assert before == scored, "the ring came back from its changelog: every point scored before the crash"
    assert len({p.ts for p in n.chart.points}) == len(n.chart.points), "no point drawn twice after replay"
    png, cid, html = inline_chart(mail)
    assert f'src="cid:{cid}"' in html
    with Image.open(io.BytesIO(png)) as img:
        img.load()
        assert img.size == (600, 260)
