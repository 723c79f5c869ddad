"""The Faust app factory: one place that turns Settings into a configured processing app."""

from __future__ import annotations

import importlib
from typing import Any

from pipeline.runtime.core import Runtime
from pipeline.runtime.faust_adapter import PromptTableManager, keep_live_events_on_resume, short_fetch_wait
from pipeline.runtime.topics import Topic
from pipeline.settings import Settings
from schemas.events import BillingEvent, ErrorEvent, RequestEvent, UsageEvent

__all__ = ["CAPABILITIES", "create_app"]

# Capability packages that expose `register(runtime)` in `agents/<name>/agent.py`.
CAPABILITIES: tuple[str, ...] = ("ratelimit", "anomaly", "trials", "notify")


def create_app(settings: Settings, capabilities: tuple[str, ...] | None = None) -> tuple[Any, Runtime]:
    import faust

    from pipeline.adapters.kafka_config import client_kwargs
    from pipeline.runtime import table_codecs

    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.broker}",
        store="memory://",  # tables recover from their changelog topics on start
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        # Every topic, table changelogs and the leader-assignor topic included, is created before
        # the worker starts (`run_worker` → `ensure_topics`, with the settings we want); Faust
        # declaring them again cost one admin round trip per topic, ~0.6 s of each start-up.
        topic_allow_declare=False,
        producer_linger=settings.producer_linger_ms / 1000,
        broker_commit_interval=settings.commit_interval_s,
        producer_max_request_size=8 << 20,
        # Per partition and fetch (Faust's default: 1 MB, 4 SDK records of 1000 requests). With
        # fewer partitions left to read, each fetch round trip delivered ~4000 events and the
        # worker fell from ~110k to 16-36k events/s; 16 MB keeps it fed (≤ 64 MB per 4 partitions).
        consumer_max_fetch_size=16 << 20,
        broker_session_timeout=settings.session_timeout_s,
        consumer_auto_offset_reset="earliest",
        datadir=str((settings.data_dir / "faust").resolve()),
        table_cleanup_interval=60.0,
        # No standby replicas: a standby applies changelog records as they come, before a
        # checkpoint says whether their epoch counts (pipeline.runtime.state); a new owner recovers
        # the partition from its changelog instead.
        table_standby_replicas=0,
        stream_buffer_maxsize=16384,
        TableManager=PromptTableManager,  # no 1 s start-up nap; starts `start_early` tasks
        **client_kwargs(settings, "faust"),  # SASL / TLS when the broker leaves loopback
    )
    # Recovery's resume() would otherwise drop records already fetched into the stream
    # queues, unprocessed, and later commits skip past them (see pipeline.runtime.faust_adapter).
    keep_live_events_on_resume(app)
    # Faust's consumer lets the broker hold an empty fetch 1.5 s: second-long stalls of busy
    # inputs (see pipeline.runtime.faust_adapter).
    short_fetch_wait(settings.fetch_wait_ms)
    runtime = Runtime(app, settings)
    # Requests are the busy input: decoded into rows (dicts), not models (see Runtime.add_input).
    runtime.add_input(Topic.REQUESTS, RequestEvent, rows=True, within_s=settings.take_within_s)
    for topic, model in (
        (Topic.BILLING, BillingEvent),
        (Topic.ERRORS, ErrorEvent),
        (Topic.USAGE, UsageEvent),
    ):
        runtime.add_input(topic, model)
    # Changelog records a table codec refused (hostile or corrupt), per codec: see pipeline.runtime.table_codecs.
    runtime.add_status("tables_refused", lambda: dict(table_codecs.refused))
    runtime.commands  # noqa: B018 - the commands agent runs in every worker (audits even unknown actions)
    for name in CAPABILITIES if capabilities is None else capabilities:
        importlib.import_module(f"agents.{name}.agent").register(runtime)
    return app, runtime
