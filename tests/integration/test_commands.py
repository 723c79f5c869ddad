"""Signed admin commands on the real stack: every outcome audited, forgeries and replays refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.admin import build_command, send_command
from pipeline.settings import Settings
from schemas.commands import Action
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


def test_forged_replayed_stale_and_unhandled_commands_are_refused_and_audited(
    settings_factory, worker_factory, writer_factory, chdb_client
):
    """Bad signature, replayed nonce, stale timestamp and unknown action each get a rejection reason."""
    settings = settings_factory()
    ensure_topics(settings)
    worker_factory(settings, capabilities="")
    tenant = f"cmd-{uuid.uuid4().hex[:6]}"

    unhandled = build_command(settings, action=Action.TRIALS_RESEND, tenant=tenant, params={"step": "welcome"},
                              actor="ops")
    first = send_command(settings, unhandled, wait_s=120)  # the first answer waits for the worker to join
    assert first is not None
    assert first.outcome == "rejected"
    assert "no running capability handles trials.resend" in first.reason

    replay = send_command(settings, unhandled, wait_s=60)
    assert replay is not None
    assert (replay.outcome, replay.reason) == ("rejected", "replayed nonce")

    forger = Settings(**{**settings.model_dump(), "signing_key": "not-the-key"})
    forged = build_command(forger, action=Action.IP_BAN, tenant=tenant, params={"ip": "1.2.3.4"}, actor="mallory")
    audit = send_command(settings, forged, wait_s=60)
    assert audit is not None
    assert (audit.outcome, audit.reason) == ("rejected", "bad signature")

    stale = build_command(settings, action=Action.IP_BAN, tenant=tenant, params={"ip": "1.2.3.4"}, actor="ops",
                          now=datetime.now(UTC) - timedelta(hours=1))
    audit = send_command(settings, stale, wait_s=60)
    assert audit is not None
    assert audit.outcome == "rejected"
    assert audit.reason.startswith("stale command")

    with writer_factory(settings):
        wait_for(lambda: chdb_client.query(
            "SELECT count() FROM audit_log FINAL WHERE tenant_id={t:String}", parameters={"t": tenant}
        ).result_rows[0][0] == 4, what="4 audit rows: one per attempt, the replay included")
    actors = {r[0] for r in chdb_client.query("SELECT actor FROM audit_log FINAL WHERE tenant_id={t:String}",
                                              parameters={"t": tenant}).result_rows}
    assert actors == {"ops", "mallory"}
