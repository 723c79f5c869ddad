"""A hostile record on a table changelog is refused on recovery: never run, and the worker goes on.

Anyone who can produce to the broker can write a table's changelog topic, which a worker
reads back whole when it starts. The record written here is what a pickle codec would run
(`open(marker, 'w')`); the worker must log and count it, treat its key as absent, and keep
processing that very stream.
"""

from __future__ import annotations

import base64
import pickle
from pathlib import Path
from typing import Any

import pytest

from pipeline.runtime.topics import Topic
from pipeline.settings import Settings
from schemas.anomaly import BaselineBand, MetricName
from tests.conftest import WorkerProcess, wait_for
from tests.integration.anomaly.anomaly_helpers import produce, read_topic, series

pytestmark = pytest.mark.integration


class _OpenMarker:
    """Unpickling this calls `open(path, 'w')`: the proof that a codec ran code from the topic."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _changelog(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{settings.app_id}-anomaly-{table}-changelog"


def _write_hostile(settings: Settings, marker: Path, keys: list[str]) -> None:
    """Hostile values under `keys` on every anomaly state changelog (as Faust frames them)."""
    from kafka import KafkaProducer

    from pipeline.adapters.kafka_admin import ensure_topics

    tables = ("streams", "derive", "chart", "hst", "rules")
    ensure_topics(settings, extra={_changelog(settings, t): True for t in tables})
    evil = pickle.dumps(_OpenMarker(marker))
    values = [base64.b64encode(evil), evil, b'{"v": 99, "s": {}}', b"\x01" + b"\xff" * 64, b"[" * 5000]
    producer = KafkaProducer(bootstrap_servers=settings.broker, acks="all")
    for table in tables:
        for value in values:
            producer.send(_changelog(settings, table), key=b"[1]", value=b"{}")  # a key that is no string
            for key in keys:
                producer.send(_changelog(settings, table), key=f'"{key}"'.encode(), value=value)
    producer.flush()
    producer.close()


def test_hostile_changelog_record_is_refused_and_the_worker_keeps_processing(
    settings_factory: Any, tmp_path: Path,
) -> None:
    """A pickle that opens a file, on every anomaly changelog, never runs; the worker scores that stream."""
    settings = settings_factory()
    marker = tmp_path / "owned"
    tenant = "victim"
    metric = MetricName.REQUEST_VOLUME
    _write_hostile(settings, marker, [f"{tenant}|{metric.value}", tenant])
    worker = WorkerProcess(settings, capabilities="anomaly").start()
    try:
        points = series(tenant, metric, 40, 1000.0, seed=7)
        produce(settings, Topic.METRICS, ((p.tenant, p) for p in points))

        def bands() -> list[BaselineBand]:
            assert worker.proc is not None
            assert worker.proc.poll() is None, worker.output()[-3000:]
            return [b for b in read_topic(settings, Topic.BASELINES, BaselineBand) if b.tenant == tenant]

        found = wait_for(bands, timeout=120, what=lambda: "baseline bands of the hostile key's stream")
        assert found, "the worker scored the stream whose state record was hostile"
        assert not marker.exists(), "a changelog record ran code in the worker"
        log = worker.output()
        assert "refused a table record (codec tw-stream-detector" in log, log[-3000:]
        assert "refused a table record (codec tw-key" in log, log[-3000:]
        assert worker.proc.poll() is None, "the worker is still running"
    finally:
        worker.stop()
    assert not marker.exists()

