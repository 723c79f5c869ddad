"""Chaos: the ClickHouse writer killed with SIGKILL mid-stream, twice, stores every record exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import caught_up, committed_offsets, ensure_topics
from pipeline.runtime.topics import Topic, topic_name
from pipeline.sdk import Publisher
from pipeline.settings import Settings
from tests.conftest import ROOT, wait_for
from tests.integration.ratelimit.conftest import T0

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

EVENTS = 60_000


class WriterProcess:
    """`tenantwatch writer` on a chDB path of its own (chDB admits one process per path)."""

    def __init__(self, settings: Settings):
        self.settings, self.proc = settings, None
        self.env = dict(os.environ, TW_BROKER=settings.broker, TW_TOPIC_PREFIX=settings.topic_prefix,
                        TW_APP_ID=settings.app_id, TW_DATA_DIR=str(settings.data_dir),
                        TW_PARTITIONS=str(settings.partitions), TW_WRITER_FLUSH_S="0.2")
        self.log = settings.data_dir / "writer.log"

    def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "writer"], cwd=ROOT, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        self.proc.kill() if kill else self.proc.terminate()
        self.proc.wait(timeout=60)
        self.proc = None

    def rows(self) -> int:
        try:
            status = json.loads((self.settings.data_dir / "status" / "writer.json").read_text())
        except (OSError, ValueError):
            return 0
        return int(status["rows"].get("requests", 0))


def query(settings: Settings, sql: str) -> Any:
    """Read the writer's chDB from a process of its own (this one holds the session's chDB)."""
    code = ("import json,sys; from pipeline.adapters.clickhouse.client import connect; "
            "print(json.dumps(connect(sys.argv[1]).query(sys.argv[2]).result_rows))")
    out = subprocess.run([sys.executable, "-c", code, settings.dsn, sql], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=120)
    return json.loads(out.stdout)


def test_a_writer_killed_twice_stores_every_request_exactly_once(kafka: str, tmp_path: Path) -> None:
    """SIGKILL at ~30% and ~65% of the stream, restart at once: every published request is in
    ClickHouse once (FINAL), whatever was inserted twice before the kills."""
    prefix = f"w{uuid.uuid4().hex[:8]}"
    settings = Settings(broker=kafka, topic_prefix=prefix, app_id=f"tw-{prefix}", data_dir=tmp_path / "w",
                        partitions=4)
    ensure_topics(settings)
    tenant = f"wk-{uuid.uuid4().hex[:6]}"
    events = [{"kind": "request", "event_id": f"{tenant}-{i}", "ts": (T0 + timedelta(milliseconds=50 * i)).isoformat(),
               "tenant_id": tenant, "ip": f"10.9.{i % 50}.{i % 200}", "method": "GET", "path": "/",
               "status": 200, "latency_ms": 3.0} for i in range(EVENTS)]
    done = threading.Event()

    def publish() -> None:
        with Publisher(settings.broker, prefix=prefix, batch_events=200) as pub:
            for i in range(0, EVENTS, 2000):
                pub.publish_many(events[i:i + 2000])
                pub.flush()
                time.sleep(0.1)
        done.set()

    writer = WriterProcess(settings)
    writer.start()
    kills = 0
    try:
        threading.Thread(target=publish, daemon=True).start()
        group, source = f"{settings.app_id}-writer", topic_name(prefix, Topic.REQUESTS)

        def stored() -> int:  # events under the writer's committed offsets (200 to a record)
            return 200 * sum(n for (t, _), n in committed_offsets(settings.broker, group).items() if t == source)

        for fraction in (0.3, 0.65):
            wait_for(lambda f=fraction: writer.rows() > 0 and stored() >= f * EVENTS, timeout=240, interval=0.05,
                     what=f"the writer past {fraction:.0%}")
            writer.stop(kill=True)
            kills += 1
            writer.start()
        wait_for(done.is_set, timeout=240, what="publishing done")
        source = [topic_name(prefix, Topic.REQUESTS)]
        wait_for(lambda: caught_up(settings.broker, f"{settings.app_id}-writer", source), timeout=300,
                 what="the writer committing every request")
    finally:
        writer.stop()
    assert kills == 2
    ((final, distinct, inserted),) = query(  # the writer's own chDB: only this test's rows
        settings, "SELECT (SELECT count() FROM requests FINAL), uniqExact(event_id), count() FROM requests")
    assert (final, distinct) == (EVENTS, EVENTS)
    assert inserted >= EVENTS  # rows inserted again after a kill are replaced, not added
