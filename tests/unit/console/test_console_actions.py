"""Console forms into commands (pure): what is signed, and what is refused with which reason."""

from __future__ import annotations

import pytest

from pipeline.console.actions import PlanError, plan
from pipeline.console.filters import parse_filters
from pipeline.console.queries import QueryError, bind, jsonable_rows
from schemas.commands import Action


def test_ban_from_an_offender_row_signs_ip_and_duration() -> None:
    """A ban names the canonical IP, the length in seconds, and says so in the summary."""
    p = plan({"action": "ip.ban", "tenant": "acme", "ip": "2001:DB8::1", "duration": "6h", "reason": "abuse"})
    assert p.action is Action.IP_BAN
    assert p.commands == (("acme", {"ip": "2001:db8::1", "duration_s": 21600.0}),)
    assert p.summary == "Ban 2001:db8::1 on tenant acme for 6h"
    assert p.reason == "abuse"


@pytest.mark.parametrize(("form", "expected"), [
    ({"action": "ip.whitelist", "tenant": "a", "cidr": "10.0.0.7/8"}, ("a", {"cidr": "10.0.0.0/8"})),
    ({"action": "ip.unban", "tenant": "a", "ip": "10.0.0.7"}, ("a", {"ip": "10.0.0.7"})),
    ({"action": "limits.set", "tenant": "a", "per_minute": "60", "per_day": "off", "per_hour": ""},
     ("a", {"per_minute": 60, "per_day": None})),
    ({"action": "tenant.shadow", "tenant": "a", "on": "0"}, ("a", {"on": False})),
    ({"action": "tenant.disable", "tenant": "a"}, ("a", {})),
    ({"action": "anomaly.ack", "tenant": "a", "anomaly_id": "an-1", "metric": "revenue"},
     ("a", {"anomaly_id": "an-1", "metric": "revenue"})),
    ({"action": "trials.resend", "tenant": "a", "step": "7day"}, ("a", {"step": "7day"})),
])
def test_each_action_plans_its_params(form: dict[str, str], expected: tuple[str, dict[str, object]]) -> None:
    """Every console action maps its form fields onto the command's params."""
    assert plan(form).commands == (expected,)


def test_expiry_run_sends_one_command_per_partition() -> None:
    """The trial expiry job is one command per partition, keyed to reach each partition's worker."""
    p = plan({"action": "trials.run_expiry", "at": "2026-03-20T00:00:00Z"}, {1: "k1", 0: "k0"})
    assert p.commands == (("k0", {"at": "2026-03-20T00:00:00+00:00", "partition": 0}),
                          ("k1", {"at": "2026-03-20T00:00:00+00:00", "partition": 1}))


@pytest.mark.parametrize(("form", "reason"), [
    ({"action": "ip.ban", "tenant": "acme", "ip": "999.1.1.1"}, "not an IP address"),
    ({"action": "ip.ban", "tenant": "acme", "ip": "1.2.3.4", "duration": "soon"}, "not a duration"),
    ({"action": "ip.ban", "tenant": "<script>", "ip": "1.2.3.4"}, "tenant"),
    ({"action": "rule.set", "tenant": "acme"}, "not available in the console"),
    ({"action": "drop.tables", "tenant": "acme"}, "unknown action"),
    ({"action": "limits.set", "tenant": "acme"}, "at least one"),
    ({"action": "limits.set", "tenant": "acme", "per_minute": "-1"}, "whole number"),
    ({"action": "anomaly.ack", "tenant": "acme", "anomaly_id": "x' OR 1=1"}, "anomaly_id"),
    ({"action": "trials.resend", "tenant": "acme", "step": "spam"}, "step"),
    ({"action": "trials.run_expiry", "at": "tomorrow"}, "ISO 8601"),
])
def test_bad_forms_are_refused_with_a_reason(form: dict[str, str], reason: str) -> None:
    """A form that does not make a valid command is refused before anything is signed."""
    with pytest.raises(PlanError, match=reason):
        plan(form, {0: "k"})


def test_filters_keep_good_values_and_report_bad_ones() -> None:
    """Bad filter values are dropped with a line to show, never raised."""
    f = parse_filters({"tenant": "acme", "ip": "10.0.0.1", "since": "6h", "refresh": "10"}, "24h")
    assert (f.tenant, f.ip, f.since_s, f.refresh, f.problems) == ("acme", "10.0.0.1", 21600, 10, ())
    bad = parse_filters({"tenant": "a b", "ip": "nope", "since": "later", "refresh": "3", "status": "x"}, "24h")
    assert (bad.tenant, bad.ip, bad.since_s, bad.refresh, bad.status) == ("", "", 86400, 30, "")
    assert len(bad.problems) == 4
    assert parse_filters({}, "").anomaly_statuses() == ["active", "acknowledged"]
    assert parse_filters({"status": "all"}).anomaly_statuses() == ["active", "acknowledged", "resolved",
                                                                  "false_positive"]


def test_query_catalogue_binds_only_known_typed_parameters() -> None:
    """Unknown queries, unknown parameters and wrong types are refused; defaults fill the rest."""
    query, params = bind("offenders", {"tenant": "acme"})
    assert params == {"tenant": "acme", "ip": "", "since": 86400, "limit": 100}
    assert "{tenant:String}" in query.sql
    for name, given in (("nope", {}), ("offenders", {"sql": "DROP"}), ("offenders", {"since": "1d"}),
                        ("offenders", {"limit": -1}), ("offenders", {"since": True}),
                        ("anomalies", {"statuses": "active"})):
        with pytest.raises(QueryError):
            bind(name, given)


def test_rows_become_json_ready() -> None:
    """Times become UTC text, non-finite floats None; other scalars pass."""
    from datetime import UTC, datetime

    out = jsonable_rows(["a", "b", "c"], [(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), float("nan"), 7)])
    assert out == {"columns": ["a", "b", "c"], "rows": [["2026-01-02 03:04:05", None, 7]]}
