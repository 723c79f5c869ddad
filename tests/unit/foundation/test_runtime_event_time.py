"""The runtime screens upstream event time: a far-future event is dead-lettered, the rest flow on."""

from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace
from typing import Any

from faust.types.tuples import Message

from pipeline.runtime.core import PartitionBatch, Runtime
from pipeline.runtime.topics import Topic, topic_name
from pipeline.settings import Settings
from schemas.events import BillingEvent
from tests.unit.foundation.fakes import fake_app


class Sent:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def send(self, key: Any = None, value: bytes = b"") -> None:
        self.values.append(value)


def billing(tenant: str, ts: str, n: int = 0) -> dict[str, Any]:
    return {"kind": "billing", "event_id": f"{tenant}-{n}", "ts": ts, "tenant_id": tenant,
            "type": "charge_succeeded", "amount_minor": 100, "currency": "EUR"}


def record(offset: int, events: list[Any]) -> Any:
    msg = Message("tw.billing", 2, offset, 0.0, 0, None, None, json.dumps(events).encode(), None)
    return SimpleNamespace(message=msg, value=msg.value, ack=lambda: None)


def make_runtime(settings: Settings, sent: Sent) -> Runtime:
    """A runtime whose outputs (dead letters) land in `sent`, with the billing input registered."""
    rt = Runtime(fake_app(topic=lambda *a, **k: sent), settings)
    rt.add_input(Topic.BILLING, BillingEvent)
    return rt


def test_a_far_future_event_is_dead_lettered_where_it_came_from_and_time_stays() -> None:
    """Would fail if a 2099 event moved the partition's watermark, reached a handler, or were
    dead-lettered without its reason, its record's offset and index, and its original."""
    sent = Sent()
    seen: list[PartitionBatch] = []

    async def scenario() -> None:
        rt = make_runtime(Settings(allowed_lateness_s=0), sent)

        async def handler(batches: Any) -> None:
            seen.extend(batches)

        rt.on(Topic.BILLING, handler)
        name = topic_name("tw", Topic.BILLING)
        first = record(10, [billing("acme", "2026-03-02T10:00:00Z"), billing("beta", "2026-03-02T10:01:00Z")])
        # index 0 does not decode; index 2 is the far one; index 3 arrived late
        second = record(11, [{"kind": "billing"}, billing("beta", "2026-03-02T10:02:00Z", 1),
                             billing("evil", "2099-01-01T00:00:00Z"), billing("acme", "2026-03-02T09:00:00Z", 1)])
        await rt.process(Topic.BILLING, name, rt._codecs[Topic.BILLING], [first])
        await rt.process(Topic.BILLING, name, rt._codecs[Topic.BILLING], [second])
        assert rt.watermark(Topic.BILLING, 2) == json_ts("2026-03-02T10:02:00Z")
        assert [e.event_id for b in seen for e in b.events] == ["acme-0", "beta-0", "beta-1", "acme-1"]
        assert rt.counters.too_far_ahead == {Topic.BILLING: 1}
        assert rt.counters.late == {Topic.BILLING: 1}
        assert rt.extra_status()["event_time"] == {"too_far_ahead": {Topic.BILLING: 1}, "late": {Topic.BILLING: 1}}
        letters = [d for v in sent.values for d in json.loads(v)]
        far = [d for d in letters if d["stage"] == "event-time"]
        assert len(far) == 1
        assert (far[0]["offset"], far[0]["batch_index"], far[0]["partition"]) == (11, 2, 2)
        assert far[0]["error"].startswith("too far ahead: event time 2099-01-01T00:00:00Z")
        assert json.loads(base64.b64decode(far[0]["payload_b64"]))["event_id"] == "evil-0"
        assert [(d["stage"], d["batch_index"]) for d in letters if d["stage"] != "event-time"] == [("ingest", 0)]

    asyncio.run(scenario())


def json_ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_live_worker_refuses_events_ahead_of_its_wall_clock_even_when_they_agree() -> None:
    """Would fail if TW_MAX_CLOCK_SKEW_S were not passed the wall clock by the runtime (agreeing
    producers dated 2090 would become the time of a live partition)."""
    for skew, expected in ((None, 0), (300.0, 2)):
        sent = Sent()
        rt = make_runtime(Settings(max_clock_skew_s=skew), sent)
        far = record(5, [billing("acme", "2090-01-01T00:00:00Z"), billing("beta", "2090-01-01T00:00:01Z")])
        asyncio.run(rt.process(Topic.BILLING, topic_name("tw", Topic.BILLING), rt._codecs[Topic.BILLING], [far]))
        assert rt.counters.too_far_ahead.get(Topic.BILLING, 0) == expected
        errors = [d["error"] for v in sent.values for d in json.loads(v)]
        assert all("ahead of the wall clock (TW_MAX_CLOCK_SKEW_S=300)" in e for e in errors)
        assert len(errors) == expected
