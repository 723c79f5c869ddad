"""Hostile input on the other readers, on the real broker: `tenantwatch publish FILE.jsonl`, the
admin-command stage and the broadcast reader of rate-limit policies."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.admin import build_command, send_command
from pipeline.runtime.topics import Topic, topic_name
from schemas.commands import Action
from tests.conftest import ROOT, wait_for
from tests.integration.hostile.test_poison_records import count, request, usage

pytestmark = pytest.mark.integration


def test_publish_cli_refuses_hostile_lines_and_sends_the_rest(settings_factory, writer_factory, chdb_client, tmp_path):
    """Invalid UTF-8, a lone surrogate, a nesting bomb, a 2 MB line and a loose type are reported; the rest is sent."""
    settings = settings_factory()
    ensure_topics(settings)
    tenant = f"cli-{uuid.uuid4().hex[:6]}"
    lines = [
        json.dumps(request(tenant, 1)).encode(),
        json.dumps(request(tenant, 2)).encode().replace(b'"/api"', b'"/\\ud800"'),
        json.dumps(request(tenant, 3)).encode().replace(b'"/api"', b'"/\xff\xfe"'),
        b"[" * 100_000,
        json.dumps(request(tenant, 4, path="/" + "x" * (2 << 20))).encode(),
        json.dumps(request(tenant, 5, status="200")).encode(),
        b"",
        json.dumps(usage(tenant, 6)).encode(),
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    env = {"TW_BROKER": settings.broker, "TW_TOPIC_PREFIX": settings.topic_prefix, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "publish", str(path), "--strict"], cwd=ROOT,
                          env=env, capture_output=True, timeout=120, check=False)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 1, (out, err)
    assert "published 2 event(s); 5 invalid line(s) not sent" in out
    for lineno in (2, 3, 4, 5, 6):
        assert f"events.jsonl:{lineno}: not sent: " in err
    assert "Traceback" not in err
    with writer_factory(settings):
        wait_for(lambda: count(chdb_client, "SELECT count() FROM usage FINAL WHERE tenant_id={t:String}",
                               t=tenant) == 1, what="the usage line")
        wait_for(lambda: count(chdb_client, "SELECT count() FROM requests FINAL WHERE tenant_id={t:String}",
                               t=tenant) == 1, what="the one valid request line")


def test_poison_commands_and_policies_leave_the_command_stage_working(settings_factory, worker_factory,
                                                                      writer_factory, chdb_client):
    """Poison on the commands and policies topics is dead-lettered or skipped; a signed command still applies."""
    from kafka import KafkaProducer

    settings = settings_factory()
    ensure_topics(settings)
    tenant = f"pol-{uuid.uuid4().hex[:6]}"
    commands = topic_name(settings.topic_prefix, Topic.COMMANDS)
    policies = topic_name(settings.topic_prefix, Topic.RATELIMIT_POLICIES)
    producer = KafkaProducer(bootstrap_servers=settings.broker)
    poison: list[Any] = [b"[" * 100_000, b'{"nonce": "\\ud800"}', b'{"kind": "command", "ts": 1777896000}']
    for value in poison:
        producer.send(commands, key=tenant.encode(), value=value)
    loose_policy = json.dumps({"tenant_id": tenant, "per_hour": "5"}).encode()
    for value in [b"[" * 100_000, b'{"tenant_id": "\\ud800"}', loose_policy]:
        producer.send(policies, key=tenant.encode(), value=value)
    producer.flush()
    producer.close()
    worker = worker_factory(settings, capabilities="ratelimit")
    cmd = build_command(settings, action=Action.LIMITS_SET, tenant=tenant, params={"per_hour": 5}, actor="ops")
    audit = send_command(settings, cmd, wait_s=180)
    assert audit is not None, f"no verdict (worker log: {worker.log})"
    assert audit.outcome == "accepted", audit.reason
    with writer_factory(settings):
        wait_for(lambda: count(chdb_client, "SELECT count() FROM dead_letters FINAL WHERE source_topic={t:String}",
                               t=commands) == len(poison), timeout=90, what="a dead letter per poisoned command")
    log = worker.output()
    assert log.count(f"bad record in {policies}") >= 3, log[-3000:]
    assert "per_hour: Input should be a valid integer" in log
    assert worker.proc is not None
    assert worker.proc.poll() is None, "the worker kept running"
