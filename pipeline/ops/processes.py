"""Entry points of the long-running processes: the processing worker and the ClickHouse writer.

Both write a small JSON status file under `<data_dir>/status/` once a second, which the demo
and `tenantwatch stack status` read (and the ingest bench, for its progress figures).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from pipeline.ops import metrics
from pipeline.settings import Settings

__all__ = ["run_worker", "run_writer", "status_dir"]

log = logging.getLogger(__name__)


def status_dir(settings: Settings) -> Path:
    path = settings.data_dir / "status"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_status(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, default=str))
    tmp.replace(path)


def run_worker(settings: Settings, capabilities: tuple[str, ...] | None = None, loglevel: str = "warn") -> None:
    """Run a processing worker until SIGTERM/SIGINT (a Faust consumer-group member)."""
    import faust

    from pipeline.adapters.kafka_admin import ensure_topics
    from pipeline.runtime.app import create_app
    from pipeline.runtime.faust_adapter import leader_topic

    app, runtime = create_app(settings, capabilities)
    # Table changelogs too: when Faust creates them itself while joining the group, the
    # consumer can subscribe before the broker's metadata lists them ("Ignoring missing
    # topic"), and a GlobalTable's recovery then waited forever (a worker hung at start-up).
    # Faust's leader-assignor topic likewise: the worker's first seek waited ~65 s for its
    # metadata in 2 of 12 bench runs once the table manager's 1 s start-up nap was gone.
    ensure_topics(settings, extra={**{t.changelog_topic.get_topic_name(): True for t in app.tables.values()},
                                   runtime.checkpoints.topic: True},
                  one_partition=[leader_topic(app)])
    status = status_dir(settings) / f"worker-{os.getpid()}.json"
    metrics.register_runtime(runtime)
    if settings.metrics_port is not None:
        metrics.start_metrics_server(settings.metrics_port)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]  # faust is untyped
    async def report() -> None:
        _export_lag(app, settings.app_id)
        c = runtime.counters
        _write_status(status, {
            "pid": os.getpid(), "at": time.time(), "events": dict(c.events), "records": dict(c.records),
            "dead_letters": dict(c.dead_letters), "extra": runtime.extra_status(),
        })

    _tune_gc()
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # its log handler turns root logging to DEBUG (≈ 11% CPU)
    try:
        worker.execute_from_commandline()
    finally:
        status.unlink(missing_ok=True)


def _tune_gc() -> None:
    """Keep the cyclic garbage collector from pausing the event loop every few seconds.

    At 10k events/s the default thresholds (700, 10, 10) ran a full collection over every
    live object (imports, tables, key states) every ~2.4 s: a 50-120 ms stall of each batch
    in flight, most of the rate limiter's p99 delay. What is loaded at start-up is frozen
    (never scanned again); young collections run per 50,000 allocations, full ones rarely.
    Almost everything the worker frees goes by reference counting, so memory stays flat.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _export_lag(app: Any, group: str) -> None:
    """Consumer lag of this worker's partitions (highwater − next offset to read) for Prometheus."""
    from pipeline.runtime.faust_adapter import read_offsets

    for topic, partition, read, high in read_offsets(app):
        if high is not None and read is not None:
            metrics.set_consumer_lag(group, topic, partition, high - read - 1)


def run_writer(settings: Settings) -> None:
    """Run the ClickHouse writer until SIGTERM/SIGINT; applies migrations first.

    On the embedded engine it also serves the console's named queries on loopback
    (`pipeline.adapters.clickhouse.read_api`): while it runs, no other process may open the data.

    It never exits on a broker outage: topics are created once the broker answers, and the
    consumer reconnects by itself (`pipeline.adapters.clickhouse.source`).
    """
    from pipeline.adapters.clickhouse.client import connect
    from pipeline.adapters.clickhouse.migrations import migrate
    from pipeline.adapters.clickhouse.read_api import ReadApiServer, SerializedClient, announcement_path
    from pipeline.adapters.clickhouse.sinks import ClickHouseSink
    from pipeline.adapters.clickhouse.writer import ClickHouseWriter
    from pipeline.adapters.kafka_config import client_kwargs

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        writer.stop()

    client = connect(settings.dsn)
    migrate(client)
    read_api = None
    if settings.dsn.startswith("chdb://"):
        # The one process chDB admits on this path: it also answers the console's reads.
        client = SerializedClient(client)
        read_api = ReadApiServer(client, announce=announcement_path(settings)).start()
    writer = ClickHouseWriter(
        bootstrap=settings.broker, prefix=settings.topic_prefix, sink=ClickHouseSink(client),
        group_id=f"{settings.app_id}-writer", batch_rows=settings.writer_batch_rows,
        flush_s=settings.writer_flush_s, buffer_max_rows=settings.writer_buffer_max_rows,
        retry_max_s=settings.writer_retry_max_s, assignment=settings.writer_assignment_in_force,
        kafka_options=client_kwargs(settings, "kafka-python"),
    )
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _ensure_topics_when_reachable(settings, lambda: stopping)
    metrics.register_writer(writer)
    if settings.metrics_port is not None:
        metrics.start_metrics_server(settings.metrics_port)
    status = status_dir(settings) / "writer.json"
    last = last_lag = 0.0
    batches = 0

    def should_stop() -> bool:
        nonlocal last, last_lag, batches
        s = writer.stats
        if s.batches > batches:
            batches = s.batches
            metrics.observe_writer_batch(s.last_batch_rows, s.last_batch_seconds)
        now = time.monotonic()
        if settings.metrics_port is not None and now - last_lag >= 5.0:
            last_lag = now
            metrics.update_kafka_lag(writer.source.lag(), f"{settings.app_id}-writer")
        if now - last >= 1.0:
            last = now
            src = writer.source
            _write_status(status, {
                "pid": os.getpid(), "at": time.time(), "rows": dict(s.rows_inserted), "batches": s.batches,
                "buffered": s.buffered_rows, "paused": s.paused, "insert_failures": s.insert_failures,
                "skipped": s.records_skipped, "connected": src.consumer is not None,
                "reconnects": src.reconnects, "refused_commits": src.refused_commits,
            })
        return False

    try:
        writer.run(should_stop)
    finally:
        status.unlink(missing_ok=True)
        if read_api is not None:
            read_api.stop()


def _ensure_topics_when_reachable(settings: Settings, stopping: Any) -> None:
    """Create the topics, waiting (with a log line per try) while the broker does not answer."""
    from kafka.errors import KafkaError

    from pipeline.adapters.kafka_admin import ensure_topics

    backoff = 0.5
    while not stopping():
        try:
            ensure_topics(settings)
            return
        except KafkaError as exc:
            log.warning("Kafka at %s does not answer (%s); retrying in %.0fs", settings.broker, exc, backoff)
            time.sleep(backoff)
            backoff = min(30.0, backoff * 2)
