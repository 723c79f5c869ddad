"""Trial automation end to end: billing events → worker (trials + notify) → real SMTP server,
tenant commands and ClickHouse; admin expiry runs and resends; hostile tenant fields."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.trials import ConversionStats
from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.admin import build_command, send_command
from pipeline.cli.trials import cohort_stats, keys_per_partition, list_trials
from pipeline.runtime.topics import Topic, topic_name
from pipeline.sdk import Publisher
from schemas.commands import Action
from schemas.trials import TrialState
from tests.conftest import wait_for
from tests.integration.trials.cohort import DAY, T0, build, iso, mails_by_recipient

pytestmark = pytest.mark.integration

CAPS = "trials,notify"


def rows(client: Any, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return list(client.query(sql, parameters=params).result_rows)


def test_thirty_day_cohort_sends_exactly_the_expected_mails_and_commands(
    settings_factory, worker_factory, writer_factory, chdb_client, sink
):
    """Every mail (recipient, order, subject) and every suspend/unsuspend of a 30-day cohort, once each."""
    sink.start()
    settings = settings_factory(smtp_port=sink.port)
    ensure_topics(settings)
    tag = f"c{uuid.uuid4().hex[:6]}"
    cohort = build(tag, n=2)
    worker = worker_factory(settings, capabilities=CAPS)
    with writer_factory(settings), Publisher(settings.broker, prefix=settings.topic_prefix, batch_events=50) as pub:
        pub.publish_many(cohort.events)
        pub.flush()
        sink.wait_for(cohort.mail_count, timeout=180)
        like = f"{tag}-%"
        wait_for(lambda: rows(chdb_client, "SELECT count() FROM tenant_commands FINAL WHERE tenant_id LIKE {t:String}",
                              t=like)[0][0] == sum(len(v) for v in cohort.commands.values()),
                 timeout=120, what=lambda: f"tenant commands (worker log: {worker.log})")
        wait_for(lambda: rows(chdb_client, "SELECT count() FROM deliveries FINAL WHERE status = 'sent' AND "
                              "notification_id IN (SELECT id FROM notifications WHERE tenant_id LIKE {t:String})",
                              t=like)[0][0] == cohort.mail_count, timeout=120, what="a sent delivery per mail")
        wait_for(lambda: rows(chdb_client, "SELECT uniqExact(trial_id) FROM trial_states WHERE tenant_id LIKE "
                              "{t:String} AND status IN ('converted', 'canceled', 'suspended')",
                              t=like)[0][0] == len(cohort.outcomes), timeout=120, what="every trial at rest")
    assert mails_by_recipient(sink.messages()) == cohort.mails
    assert len(sink.files()) == cohort.mail_count
    assert not sink.duplicates, "no mail sent twice"
    got: dict[str, list[str]] = {}
    for tenant, action in rows(chdb_client, "SELECT tenant_id, action FROM tenant_commands FINAL "
                               "WHERE tenant_id LIKE {t:String} ORDER BY ts", t=f"{tag}-%"):
        got.setdefault(tenant, []).append(action)
    assert got == cohort.commands
    listed = {r["tenant_id"]: r["status"] for r in list_trials(chdb_client, limit=10_000)
              if r["tenant_id"].startswith(tag)}
    assert listed == cohort.outcomes
    # `trials stats` against the pure aggregation over the same state records.
    names = ("id", "trial_id", "tenant_id", "plan", "status", "previous", "version", "started_at", "ends_at",
             "converted_at", "ts", "reason")
    states = [TrialState.model_validate({k: v.replace(tzinfo=UTC) if isinstance(v, datetime) else v
                                         for k, v in zip(names, r, strict=True)})
              for r in rows(chdb_client, "SELECT id, trial_id, tenant_id, plan, status, previous, version, started_at,"
                            " ends_at, converted_at, ts, reason FROM trial_states FINAL")]
    oracle = {(r.week.isoformat(), r.plan): (r.started, r.converted, r.avg_days_to_convert)
              for r in ConversionStats().update_many(states).rows()}
    stats = {(r["week"], r["plan"]): (r["started"], r["converted"], r["avg_days_to_convert"])
             for r in cohort_stats(chdb_client)}
    assert stats.keys() == oracle.keys()
    for key, (started, converted, avg) in oracle.items():
        assert stats[key][:2] == (started, converted)
        assert (avg is None and stats[key][2] is None) or abs(stats[key][2] - avg) < 1e-3


def test_admin_expiry_run_resend_and_hostile_tenant_fields(settings_factory, worker_factory, sink):
    """run-expiry fires what is due at its time; resend mails one step again; injections stay inert."""
    from kafka import KafkaProducer

    sink.start()
    settings = settings_factory(smtp_port=sink.port)
    ensure_topics(settings)
    tag = f"a{uuid.uuid4().hex[:6]}"
    worker_factory(settings, capabilities=CAPS)
    start = T0 + 40 * DAY
    xss = "<script>alert(1)</script> & <b>Bob</b>"
    events = [
        {"kind": "billing", "event_id": f"{tag}-s", "ts": iso(start), "tenant_id": f"{tag}-t", "type": "trial_started",
         "plan": "pro", "trial_days": 14, "contact_email": f"owner@{tag}.example", "contact_name": xss},
        # Header injection through a tenant field is refused at the door (dead letter), never mailed.
        {"kind": "billing", "event_id": f"{tag}-h", "ts": iso(start), "tenant_id": f"{tag}-h", "type": "trial_started",
         "plan": "pro", "trial_days": 14, "contact_email": f"owner@{tag}-h.example",
         "contact_name": "Eve\r\nBcc: victim@evil.example"},
    ]
    producer = KafkaProducer(bootstrap_servers=settings.broker)
    billing = topic_name(settings.topic_prefix, Topic.BILLING)
    for e in events:
        producer.send(billing, key=e["tenant_id"].encode(), value=json.dumps(e).encode())
    # An alert from another agent whose variable would inject a header through the subject.
    alert = {"id": f"{tag}-alert", "kind": "anomaly_alert", "recipient": "ops@owner.example", "tenant_id": f"{tag}-t",
             "variables": {"tenant_id": f"{tag}-t", "metric": "cpu\r\nBcc: victim@evil.example", "value": 1,
                           "baseline": 0, "severity": "critical", "detected_at": iso(start), "description": xss},
             "severity": "critical", "ts": iso(start)}
    producer.send(topic_name(settings.topic_prefix, Topic.NOTIFICATIONS), key=b"ops@owner.example",
                  value=json.dumps(alert).encode())
    # Event time moves with events: a tick on every partition carries the watermark past the start.
    for key in keys_per_partition(settings.partitions, prefix=f"{tag}-clock").values():
        tick = {"kind": "billing", "event_id": f"{key}-tick", "ts": iso(start + 3600), "tenant_id": key,
                "type": "charge_succeeded", "amount_minor": 1, "currency": "EUR"}
        producer.send(billing, key=key.encode(), value=json.dumps(tick).encode())
    producer.flush()
    producer.close()
    sink.wait_for(1, timeout=180)  # the welcome mail

    at = iso(start + 15 * DAY)
    for p, key in sorted(keys_per_partition(settings.partitions, prefix=tag).items()):
        cmd = build_command(settings, action=Action.TRIALS_RUN_EXPIRY, tenant=key,
                            params={"at": at, "partition": p}, actor="ops")
        record = send_command(settings, cmd, wait_s=120)
        assert record is not None, f"no verdict for partition {p}"
        assert record.outcome == "accepted", record.reason
    resend = build_command(settings, action=Action.TRIALS_RESEND, tenant=f"{tag}-t", params={"step": "welcome"},
                           actor="ops")
    record = send_command(settings, resend, wait_s=120)
    assert record is not None
    assert record.outcome == "accepted", record.reason
    sink.wait_for(3, timeout=120)
    kinds = sorted(str(m["X-Tenantwatch-Kind"]) for m in sink.messages())
    # The run jumped past both reminders: only the newest mail (expired) goes out, then the resend.
    assert kinds == ["trial_expired", "welcome", "welcome"]
    for m in sink.messages():
        assert [str(a) for a in m.get_all("To")] == [f"owner@{tag}.example"]
        assert m.get_all("Bcc") is None
        html = m.get_body(preferencelist=("html",)).get_content()
        if m["X-Tenantwatch-Kind"] == "welcome":
            assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;Bob&lt;/b&gt;" in html
            assert "<script>" not in html
    rejected = build_command(settings, action=Action.TRIALS_RESEND, tenant=f"{tag}-nobody",
                             params={"step": "welcome"}, actor="ops")
    record = send_command(settings, rejected, wait_s=120)
    assert record is not None
    assert (record.outcome, record.reason) == ("rejected", f"no trial for tenant {tag}-nobody")
    assert len(sink.files()) == 3, "neither the injected trial nor the injected alert was mailed"
