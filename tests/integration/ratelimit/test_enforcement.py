"""Rate limiting on the real stack: throttle then ban, allow/deny lists, shadow mode, admin commands."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from pipeline.admin import send_command
from pipeline.cli.ratelimit import latest_limits, top_offenders
from pipeline.settings import Settings
from schemas.commands import Action
from tests.conftest import wait_for
from tests.integration.ratelimit.conftest import T0, admin, command, publish, requests, rows, tenant_name, ticks

pytestmark = pytest.mark.integration

ABUSER, NORMAL, WHITE, BLACK = "192.0.2.66", "192.0.2.10", "198.51.100.7", "203.0.113.5"
STRICT = {"per_minute": 10, "per_hour": 1000, "per_day": 10000, "violation_threshold": 2, "ban_base_s": 600}


def decisions(client: Any, tenant: str) -> list[tuple[Any, ...]]:
    return rows(client, "SELECT ip, state, reason, shadow, limit, ts FROM rl_decisions FINAL "
                        "WHERE tenant_id = {t:String} ORDER BY ts, state", t=tenant)


def traffic(tenant: str) -> list[dict[str, Any]]:
    """One minute: an abuser at 1/s, a quiet IP, a whitelisted IP at 1/s, a blacklisted one."""
    return [*requests(tenant, ABUSER, 60), *requests(tenant, NORMAL, 5, step_s=7),
            *requests(tenant, WHITE, 60), *requests(tenant, BLACK, 3, step_s=11)]


def test_abuser_is_throttled_then_banned_lists_win_and_rollups_count(stack: Settings, chdb_client: Any) -> None:
    """Over-limit IPs are throttled then banned (ending in event time); white never, black always blocked."""
    tenant = tenant_name("rl")
    for action, params in ((Action.LIMITS_SET, STRICT), (Action.IP_WHITELIST, {"cidr": WHITE}),
                           (Action.IP_BLACKLIST, {"cidr": "203.0.113.0/24"})):
        assert admin(stack, action, tenant, **params).outcome == "accepted"
    back = T0 + timedelta(seconds=1000)  # past the 600 s ban
    publish(stack, [*traffic(tenant), *requests(tenant, ABUSER, 1, start=back), *ticks(tenant, back)])
    wait_for(lambda: rows(chdb_client, "SELECT count() FROM rl_rollups_tenant WHERE tenant_id = {t:String}",
                          t=tenant)[0][0] >= 1, timeout=180, what="the first minute's rollup")
    wait_for(lambda: any(d[0] == ABUSER and d[1] == "allowed" for d in decisions(chdb_client, tenant)),
             timeout=120, what="the abuser allowed again after the ban")
    got = decisions(chdb_client, tenant)
    abuser = [(d[1], d[2]) for d in got if d[0] == ABUSER]
    # The ban ends at its own time, as event time passes it, before the request that moved time
    # there is decided (the same wherever batches split), so that request changes nothing.
    # (the 10th request uses 10/minute up: announced, so an edge refuses the 11th)
    assert abuser == [("allowed", "exhausted:minute"), ("throttled", "limit:minute"), ("banned", "ban"),
                      ("allowed", "ban-ended")]
    assert not [d for d in got if d[0] in (WHITE, NORMAL)], "whitelisted and quiet IPs never change state"
    assert [(d[1], d[2]) for d in got if d[0] == BLACK] == [("blocked", "blacklist")]
    assert all(not d[3] for d in got)
    bans = rows(chdb_client, "SELECT action, reason, dateDiff('second', start, end) FROM rl_bans FINAL "
                             "WHERE tenant_id = {t:String} ORDER BY ts, action DESC", t=tenant)
    assert bans == [("started", "auto", 600), ("ended", "auto", 600)]
    assert rows(chdb_client, "SELECT count() FROM rl_violations FINAL WHERE tenant_id = {t:String} "
                             "AND ip = {ip:String}", t=tenant, ip=ABUSER)[0][0] == 2
    top = top_offenders(chdb_client, 86400, tenant)
    assert [(r[1], r[2], r[3], r[5]) for r in top] == [(ABUSER, 2, 21, 1)], "ip top: violations, peak, bans"
    latest = latest_limits(chdb_client, tenant)
    assert latest is not None
    assert (latest[2], latest[3]["per_minute"], latest[3]["blacklist"]) == ("ip.blacklist", 10, ["203.0.113.0/24"])
    # minute 0: 128 requests; blocked = abuser's 11th..60th (50) + the blacklisted 3
    # (the abuser's, the whitelisted, the quiet and the blacklisted IP: parts from their partitions)
    assert rows(chdb_client, "SELECT requests, blocked, distinct_ips FROM rl_rollups_tenant "
                             "WHERE tenant_id = {t:String} AND minute = {m:DateTime64(3, 'UTC')}",
                t=tenant, m=T0) == [(128, 53, 4)]


def test_shadow_mode_records_but_never_enforces(stack: Settings, chdb_client: Any) -> None:
    """A shadow tenant gets the same throttle/ban records, every one flagged shadow."""
    tenant = tenant_name("shadow")
    assert admin(stack, Action.LIMITS_SET, tenant, **STRICT).outcome == "accepted"
    assert admin(stack, Action.TENANT_SHADOW, tenant, on=True).outcome == "accepted"
    publish(stack, [*requests(tenant, ABUSER, 60), *ticks(tenant, T0 + timedelta(seconds=120))])
    wait_for(lambda: len(decisions(chdb_client, tenant)) >= 3, timeout=180, what="shadow decisions")
    got = decisions(chdb_client, tenant)
    assert [(d[1], d[2]) for d in got] == [("allowed", "exhausted:minute"), ("throttled", "limit:minute"),
                                           ("banned", "ban")]
    assert all(d[3] for d in got), "no enforcing (non-shadow) decision"
    wait_for(lambda: rows(chdb_client, "SELECT count() FROM rl_bans FINAL WHERE tenant_id = {t:String}",
                          t=tenant)[0][0] == 1, what="the shadow ban")
    assert rows(chdb_client, "SELECT shadow FROM rl_bans FINAL WHERE tenant_id = {t:String}", t=tenant) == [(True,)]


def test_admin_commands_accepted_effective_or_rejected_without_change(stack: Settings, chdb_client: Any) -> None:
    """Valid commands take effect; forged, replayed, bad-CIDR and negative-limit ones are refused."""
    tenant = tenant_name("adm")
    ok = command(stack, Action.LIMITS_SET, tenant, per_hour=5, per_day=None)
    assert (r := send_command(stack, ok, wait_s=180)) is not None
    assert r.outcome == "accepted"
    replay = send_command(stack, ok, wait_s=120)
    forged = command(stack, Action.LIMITS_SET, tenant, per_hour=1000)
    flipped = ("0" if forged.signature[0] != "0" else "1") + forged.signature[1:]
    forged = forged.model_copy(update={"signature": flipped})
    refused = {
        "replay": replay,
        "forged": send_command(stack, forged, wait_s=120),
        "cidr": admin(stack, Action.IP_WHITELIST, tenant, cidr="10.0.0.300/33"),
        "negative": admin(stack, Action.LIMITS_SET, tenant, per_hour=-1),
    }
    reasons = {k: (v.outcome, v.reason) if v else ("no answer", "") for k, v in refused.items()}
    negative = reasons["negative"][1]
    assert reasons == {
        "replay": ("rejected", "replayed nonce"),
        "forged": ("rejected", "bad signature"),
        "cidr": ("rejected", "'10.0.0.300/33' is not an IP address or CIDR range"),
        "negative": ("rejected", negative),
    }
    assert "per_hour" in negative
    assert "greater than or equal to 0" in negative
    assert admin(stack, Action.IP_BAN, tenant, ip="192.0.2.99", duration_s=600).outcome == "accepted"
    publish(stack, requests(tenant, "192.0.2.1", 6, step_s=30))  # the limit in force is still 5/hour
    wait_for(lambda: {d[:2] for d in decisions(chdb_client, tenant)} >= {("192.0.2.1", "throttled"),
                                                                          ("192.0.2.99", "banned")},
             timeout=120, what="the throttle and the manual ban")
    got = {d[0]: d for d in decisions(chdb_client, tenant)}  # the latest of each IP (ORDER BY ts)
    assert got["192.0.2.1"][1:3] == ("throttled", "limit:hour")
    assert got["192.0.2.1"][4] == 5
    assert got["192.0.2.99"][1:3] == ("banned", "ban")
    assert rows(chdb_client, "SELECT count() FROM rl_limits FINAL WHERE tenant_id = {t:String}", t=tenant) == [(1,)]
    assert admin(stack, Action.IP_UNBAN, tenant, ip="192.0.2.99").outcome == "accepted"
    wait_for(lambda: rows(chdb_client, "SELECT groupArray(action) FROM (SELECT action FROM rl_bans FINAL "
                                       "WHERE tenant_id = {t:String} ORDER BY ts, action DESC)", t=tenant)
             == [(["started", "ended"],)], timeout=120, what="the manual ban started then ended")
    # without FINAL: the replay's audit row shares its original's id (the nonce)
    audit = wait_for(lambda: rows(
        chdb_client, "SELECT outcome, reason FROM audit_log WHERE tenant_id = {t:String} ORDER BY outcome, reason",
        t=tenant) if len(rows(chdb_client, "SELECT id FROM audit_log WHERE tenant_id = {t:String}", t=tenant)) >= 7
        else None, what="seven audit rows")
    assert [a[0] for a in audit].count("accepted") == 3
    assert {a[1] for a in audit if a[0] == "rejected"} == {r[1] for r in reasons.values()}
