"""The anomaly agent on the real stack, fed metric points directly: detection, workflow, rules, restart.

One worker (`--capabilities anomaly`) and one writer serve the module; each test uses its own
tenants. The restart test kills that worker, so it runs last.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import ensure_topics
from pipeline.admin import build_command, send_command
from pipeline.runtime.topics import Topic
from pipeline.settings import Settings
from schemas.anomaly import MetricName, MetricPoint
from schemas.commands import Action
from schemas.notify import Notification
from tests.conftest import WorkerProcess, wait_for
from tests.integration.anomaly.anomaly_helpers import (
    T0,
    anomalies,
    hours_between,
    make_settings,
    produce,
    read_topic,
    rows,
    series,
    start_worker,
    wait_for_anomaly,
)

pytestmark = pytest.mark.integration

M = MetricName


@pytest.fixture(scope="module")
def stack(kafka: str, session_dir: Path, chdb_client: Any) -> Iterator[tuple[Settings, WorkerProcess]]:
    from pipeline.adapters.clickhouse.sinks import ClickHouseSink
    from pipeline.adapters.clickhouse.writer import ClickHouseWriter
    from tests.conftest import WriterThread

    settings = make_settings(kafka, session_dir)
    ensure_topics(settings)
    worker = start_worker(settings)
    writer = ClickHouseWriter(bootstrap=settings.broker, prefix=settings.topic_prefix,
                              sink=ClickHouseSink(chdb_client), group_id=f"{settings.app_id}-writer", flush_s=0.2)
    with WriterThread(writer):
        yield settings, worker
    worker.stop()


def tenant(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def publish(settings: Settings, points: list[MetricPoint]) -> None:
    produce(settings, Topic.METRICS, ((p.tenant, p) for p in sorted(points, key=lambda p: p.ts)))


def command(settings: Settings, action: Action, tenant_id: str, **params: Any) -> Any:
    cmd = build_command(settings, action=action, tenant=tenant_id, params=params, actor="alice", reason="test")
    audit = send_command(settings, cmd, wait_s=120)
    assert audit is not None, "the worker answered the command"
    return audit


def status_of(client: Any, tenant_id: str, anomaly_id: str) -> str | None:
    found = rows(client, "SELECT status FROM anomalies FINAL WHERE tenant = {t:String} AND id = {i:String}",
                 t=tenant_id, i=anomaly_id)
    return found[0][0] if found else None


INJECT = 96  # hour of injection: four days of warm-up, so the daily profile is in use
HOURS = 120


def test_injected_anomalies_are_detected_quickly_and_clean_streams_stay_under_budget(stack, chdb_client):
    """A revenue drop, error-rate spike and volume spike open anomalies within 2 h; false alarms ≤ 1 %."""
    settings, worker = stack
    rev, err, use, calm = tenant("rev"), tenant("err"), tenant("use"), tenant("calm")
    levels = {M.REVENUE: (5000.0, 0.05), M.ERROR_RATE: (0.02, 0.15), M.REQUEST_VOLUME: (600.0, 0.08)}
    points = [
        *series(rev, M.REVENUE, HOURS, 5000, seed=1, effect=dict.fromkeys(range(INJECT, HOURS), 0.25)),
        *series(err, M.ERROR_RATE, HOURS, 0.02, seed=2, noise=0.15, effect=dict.fromkeys(range(INJECT, 100), 4.0)),
        *series(use, M.REQUEST_VOLUME, HOURS, 600, seed=3, noise=0.08, effect=dict.fromkeys(range(INJECT, 102), 3.0)),
    ]
    for i, (metric, (level, noise)) in enumerate(levels.items()):
        points += series(calm, metric, HOURS, level, seed=10 + i, noise=noise)
    publish(settings, points)
    for name, metric in ((rev, M.REVENUE), (err, M.ERROR_RATE), (use, M.REQUEST_VOLUME)):
        a = wait_for_anomaly(chdb_client, name, metric)
        assert a["direction"] == ("down" if metric is M.REVENUE else "up")
        assert 0 <= hours_between(a["detected_ts"], T0) - INJECT <= 2, f"{metric.value} detected within 2 h"
    wait_for(lambda: rows(chdb_client, "SELECT count() FROM baselines FINAL WHERE tenant = {t:String}",
                          t=calm)[0][0] >= 3 * (HOURS - 48), what="the calm tenant's bands (all points scored)")
    false_alarms = [a for t in (rev, err, use, calm) for a in anomalies(chdb_client, t)
                    if t == calm or hours_between(a["start_ts"], T0) < INJECT]
    scored = 3 * (HOURS - 48) + 3 * (INJECT - 48)  # points after the 48-point warm-up, outside injections
    assert len(false_alarms) <= 0.01 * scored, f"false-alarm budget 1 % of {scored}: {false_alarms}"
    assert worker.proc is not None
    assert worker.proc.poll() is None


def test_workflow_commands_move_statuses_and_forged_ones_are_refused(stack, chdb_client):
    """ack → resolve and false-positive move statuses; a forged and an illegal command change nothing."""
    settings, _ = stack
    wf = tenant("wf")
    spike = dict.fromkeys(range(60, 63), 4.0)
    publish(settings, [*series(wf, M.REQUEST_VOLUME, 64, 800, seed=5, effect=spike),
                       *series(wf, M.ERROR_RATE, 64, 0.05, seed=6, effect=spike)])
    volume = wait_for_anomaly(chdb_client, wf, M.REQUEST_VOLUME)
    errors = wait_for_anomaly(chdb_client, wf, M.ERROR_RATE)

    forged = build_command(settings, action=Action.ANOMALY_ACK, tenant=wf, params={"anomaly_id": volume["id"]},
                           actor="mallory").model_copy(update={"signature": "0" * 64})
    audit = send_command(settings, forged, wait_s=120)
    assert audit is not None
    assert (audit.outcome, audit.reason) == ("rejected", "bad signature")

    assert command(settings, Action.ANOMALY_ACK, wf, anomaly_id=volume["id"]).outcome == "accepted"
    wait_for(lambda: status_of(chdb_client, wf, volume["id"]) == "acknowledged", timeout=90, what="acknowledged")
    again = command(settings, Action.ANOMALY_ACK, wf, anomaly_id=volume["id"])
    assert (again.outcome, again.reason) == ("rejected", "illegal transition acknowledged → acknowledged")
    assert command(settings, Action.ANOMALY_RESOLVE, wf, anomaly_id=volume["id"]).outcome == "accepted"
    fp = command(settings, Action.ANOMALY_FALSE_POSITIVE, wf, anomaly_id=errors["id"], metric="error_rate")
    assert fp.outcome == "accepted"
    unknown = command(settings, Action.ANOMALY_RESOLVE, wf, anomaly_id="nope")
    assert unknown.outcome == "rejected"
    assert "not open" in unknown.reason

    wait_for(lambda: status_of(chdb_client, wf, volume["id"]) == "resolved", timeout=90, what="resolved")
    wait_for(lambda: status_of(chdb_client, wf, errors["id"]) == "false_positive", timeout=90, what="false positive")
    history = rows(chdb_client, "SELECT from_status, to_status, actor FROM anomaly_status FINAL"
                   " WHERE anomaly_id = {i:String} ORDER BY ts, to_status", i=volume["id"])
    assert [h[1] for h in history] == ["active", "acknowledged", "resolved"]
    assert history[1] == ("active", "acknowledged", "alice")
    outcomes = lambda: rows(chdb_client, "SELECT outcome, count() FROM audit_log FINAL"  # noqa: E731
                            " WHERE tenant_id = {t:String} GROUP BY outcome ORDER BY outcome", t=wf)
    wait_for(lambda: outcomes() == [("accepted", 3), ("rejected", 3)], timeout=90,
             what=lambda: f"3 accepted and 3 rejected commands in the audit log, have {outcomes()}")
    alerts = [n for n in read_topic(settings, Topic.NOTIFICATIONS, Notification) if n.tenant_id == wf]
    assert {n.variables["anomaly_id"] for n in alerts} == {volume["id"], errors["id"]}, "one alert per episode"
    assert all(n.kind == "anomaly_alert" and n.severity.value in ("warning", "critical") for n in alerts)


def test_rules_are_edited_at_run_time_and_recorded(stack, chdb_client):
    """rule.set changes what is detected for one tenant, lands in the rule history, and refuses bad values."""
    settings, _ = stack
    strict, loose = tenant("strict"), tenant("loose")
    bad = command(settings, Action.RULE_SET, strict, metric="request_volume", threshold_sigma=-1)
    assert bad.outcome == "rejected"
    assert "threshold_sigma" in bad.reason
    ok = command(settings, Action.RULE_SET, strict, metric="request_volume", enabled=False, warmup=24)
    assert ok.outcome == "accepted"
    spike = dict.fromkeys(range(60, 63), 4.0)
    publish(settings, [p for t in (strict, loose) for p in series(t, M.REQUEST_VOLUME, 64, 800, seed=7, effect=spike)])
    wait_for_anomaly(chdb_client, loose, M.REQUEST_VOLUME)
    wait_for(lambda: rows(chdb_client, "SELECT count() FROM baselines FINAL WHERE tenant = {t:String} AND ts >="
                          " toDateTime64({s:String}, 3, 'UTC')", t=strict, s="2026-01-07 12:00:00")[0][0] >= 4,
             what="the strict tenant's spike scored")
    assert anomalies(chdb_client, strict) == [], "the disabled rule raised nothing"
    history = wait_for(lambda: rows(chdb_client, "SELECT actor, enabled, warmup, is_default FROM anomaly_rules"
                                    " FINAL WHERE tenant = {t:String}", t=strict), what="the rule history row")
    assert history == [("alice", False, 24, False)]


def test_restart_keeps_baselines(stack, chdb_client):
    """After a kill and restart, the recovered detector scores at once and catches a spike (no new warm-up)."""
    settings, worker = stack
    rs = tenant("rs")
    publish(settings, series(rs, M.REQUEST_VOLUME, 72, 800, seed=9))
    wait_for(lambda: rows(chdb_client, "SELECT count() FROM baselines FINAL WHERE tenant = {t:String}",
                          t=rs)[0][0] >= 50, timeout=150, what="bands of the first 72 points")
    worker.stop(kill=True)
    worker.start()
    later = series(rs, M.REQUEST_VOLUME, 76, 800, seed=9, effect=dict.fromkeys(range(72, 76), 4.0))[72:]
    publish(settings, later)
    a = wait_for_anomaly(chdb_client, rs, M.REQUEST_VOLUME, timeout=180)
    assert hours_between(a["start_ts"], T0) >= 72, "raised on the post-restart spike"
    # Bands travel on their own topic: the writer may insert them a batch after the anomaly.
    band = wait_for(lambda: rows(chdb_client, "SELECT expected FROM baselines FINAL WHERE tenant = {t:String}"
                                 " AND ts = toDateTime64({s:String}, 3, 'UTC')",
                                 t=rs, s=later[0].ts.strftime("%Y-%m-%d %H:%M:%S")),
                    timeout=60, what="a band for the first post-restart point (it was scored at once)")
    assert 0.7 * 800 < band[0][0] < 1.3 * 800, "against the learnt baseline"


def test_cli_lists_anomalies_and_acts_on_them(stack, chdb_client, monkeypatch, capsys):
    """`tenantwatch anomalies list|false-positive` and `rules set|show` work against the live stack."""
    from pipeline.cli import main

    settings, _ = stack
    cli = tenant("cli")
    publish(settings, series(cli, M.REQUEST_VOLUME, 64, 800, seed=11, effect=dict.fromkeys(range(60, 63), 4.0)))
    a = wait_for_anomaly(chdb_client, cli, M.REQUEST_VOLUME)
    for name, value in {"TW_BROKER": settings.broker, "TW_TOPIC_PREFIX": settings.topic_prefix,
                        "TW_CLICKHOUSE_DSN": settings.clickhouse_dsn or ""}.items():
        monkeypatch.setenv(name, value)
    assert main(["anomalies", "list", "--tenant", cli, "--status", "active"]) == 0
    listed = capsys.readouterr().out
    assert a["id"] in listed
    assert "1 anomaly" in listed
    assert main(["anomalies", "false-positive", a["id"], "--tenant", cli, "--actor", "bob", "--wait", "120"]) == 0
    assert capsys.readouterr().out.startswith("accepted: ")
    assert main(["anomalies", "ack", a["id"], "--tenant", cli, "--wait", "120"]) == 4, "terminal: refused"
    assert "rejected: illegal transition false_positive" in capsys.readouterr().out
    assert main(["rules", "set", "--tenant", cli, "--metric", "revenue", "--param", "threshold_sigma=3.5",
                 "--wait", "120"]) == 0
    wait_for(lambda: rows(chdb_client, "SELECT count() FROM anomaly_rules FINAL WHERE tenant = {t:String}", t=cli)
             == [(1,)], timeout=90, what="the rule history row")
    capsys.readouterr()
    assert main(["rules", "show", "--tenant", cli]) == 0
    assert '"threshold_sigma":3.5' in capsys.readouterr().out
