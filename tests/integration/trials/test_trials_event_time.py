"""One tenant's far-future billing event cannot expire other tenants' trials on its partition."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.runtime.topics import Topic, topic_name
from pipeline.sdk import Publisher, partition_for
from schemas.events import BillingEvent
from tests.conftest import wait_for
from tests.integration.trials.cohort import HOUR, T0, iso

pytestmark = pytest.mark.integration

Y2099 = "2099-01-01T00:00:00+00:00"
REPLAY_SQL = ("SELECT base64Decode(payload_b64) FROM dead_letters FINAL "
              "WHERE stage = 'event-time' AND NOT truncated AND source_topic = {s:String}")


def rows(client: Any, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return list(client.query(sql, parameters=params).result_rows)


def tenants_on(partition: int, prefix: str, n: int, partitions: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        name = f"{prefix}{i}"
        if partition_for(name, partitions) == partition:
            out.append(name)
        i += 1
    return out


def trial(tenant: str, at: float, days: int = 30) -> dict[str, Any]:
    return {"kind": "billing", "event_id": f"{tenant}-start", "ts": iso(at), "tenant_id": tenant,
            "type": "trial_started", "plan": "pro", "trial_days": days, "contact_email": f"owner@{tenant}.example",
            "contact_name": "Owner"}


def test_a_2099_billing_event_expires_no_trial_of_other_tenants(
    settings_factory, worker_factory, writer_factory, chdb_client, sink
):
    """Eight 30-day trials share a partition with a tenant whose charge is dated 2099: no expiry
    mail, no suspension, and the 2099 event in the dead letters with its reason (the reported 8 of 8)."""
    sink.start()
    settings = settings_factory(smtp_port=sink.port)
    ensure_topics(settings)
    tag = f"et{uuid.uuid4().hex[:6]}"
    victims = tenants_on(1, f"{tag}-v", 8, settings.partitions)
    evil, after = tenants_on(1, f"{tag}-x", 2, settings.partitions)
    events = [trial(t, T0 + i * 600) for i, t in enumerate(victims)]
    events.append({"kind": "billing", "event_id": f"{evil}-2099", "ts": Y2099, "tenant_id": evil,
                   "type": "charge_succeeded", "amount_minor": 100, "currency": "EUR"})
    events.append(trial(after, T0 + 2 * HOUR))  # processed after the 2099 event: proves it was passed
    events.append({"kind": "billing", "event_id": f"{tag}-tick", "ts": iso(T0 + 3 * HOUR), "tenant_id": victims[0],
                   "type": "charge_succeeded", "amount_minor": 100, "currency": "EUR"})  # time passes `after`'s start
    worker_factory(settings, capabilities="trials,notify")
    with writer_factory(settings), Publisher(settings.broker, prefix=settings.topic_prefix, batch_events=1) as pub:
        for e in events:  # one record each: the 2099 event arrives between the others
            pub.publish(e)
        pub.flush()
        sink.wait_for(len(victims) + 1, timeout=180)  # the welcome mails
        like = f"{tag}-%"
        # Trial states are keyed by tenant, like billing: on the writer's side the state of the
        # trial started after the 2099 event comes after any state the 2099 event caused.
        wait_for(lambda: rows(chdb_client, "SELECT count() FROM trial_states FINAL WHERE tenant_id = {t:String}",
                              t=after)[0][0] >= 1, timeout=120, what="the later trial's state")
        latest = dict(rows(chdb_client, "SELECT tenant_id, argMax(status, version) FROM trial_states FINAL "
                                        "WHERE tenant_id LIKE {t:String} GROUP BY tenant_id", t=like))
        ended = sorted(t for t in victims if latest.get(t) != "trialing")
        assert not ended, f"{len(ended)} of {len(victims)} trials ended early: {latest}"
        billing = topic_name(settings.topic_prefix, Topic.BILLING)
        dead = wait_for(lambda: rows(chdb_client, "SELECT stage, partition, error, payload_b64 FROM dead_letters "
                                     "FINAL WHERE source_topic = {s:String}", s=billing),
                        timeout=120, what="the 2099 event in the dead letters")
        commands = rows(chdb_client, "SELECT count() FROM tenant_commands FINAL WHERE tenant_id LIKE {t:String}",
                        t=like)[0][0]
    kinds = [str(m["X-Tenantwatch-Kind"]) for m in sink.messages()]
    assert kinds.count("trial_expired") == 0, kinds
    assert kinds.count("welcome") == len(victims) + 1
    assert commands == 0
    ((stage, partition, error, payload),) = dead
    assert (stage, partition) == ("event-time", 1)
    assert error.startswith("too far ahead: event time 2099-01-01T00:00:00Z")
    assert json.loads(base64.b64decode(payload))["event_id"] == f"{evil}-2099"  # the original, to replay
    # The replay recipe of docs/EVENT_TIME.md gives the event back as a JSON line `tenantwatch publish` takes.
    (line,) = [r[0] for r in rows(chdb_client, REPLAY_SQL, s=billing)]
    assert BillingEvent.model_validate_json(line).event_id == f"{evil}-2099"
