"""Each reading command's `--json` over the dashboards scenario in chDB: one JSON document with
the rows its table would show."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.cli import main
from tests.integration.dashboards.scenario import Scenario

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_json(session_dir: Any, dash_scenario: Any, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> Any:
    """Run a command on the session's chDB and parse what it printed."""
    monkeypatch.setenv("TW_CLICKHOUSE_DSN", f"chdb://{session_dir / 'clickhouse'}")

    def run(*argv: str) -> Any:
        assert main([*argv, "--json"]) == 0, capsys.readouterr().err
        return json.loads(capsys.readouterr().out)

    return run


def test_anomalies_and_rules_as_json(cli_json: Any, dash_scenario: tuple[Scenario, Any]) -> None:
    """`anomalies list` and `rules show` of a scenario tenant: its one anomaly and its one rule."""
    sc, _ = dash_scenario
    tenant = sorted({a.tenant for a in sc.records["anomalies"]})[0]  # type: ignore[attr-defined]
    rows = cli_json("anomalies", "list", "--tenant", tenant)
    assert [(r["tenant"], r["metric"]) for r in rows] == [(tenant, "request_volume")]
    assert [r["tenant"] for r in cli_json("rules", "show", "--tenant", tenant)] == [tenant]
    assert {r["metric"] for r in cli_json("rules", "show", "--defaults")} >= {"request_volume"}


def test_offenders_and_limits_as_json(cli_json: Any) -> None:
    """`ip top` and `limits show` of the scenario's limited tenant."""
    rows = cli_json("ip", "top", "--tenant", "dash-umbrella-000", "--since", "30d")
    assert rows
    assert {r["tenant_id"] for r in rows} == {"dash-umbrella-000"}
    assert all(r["violations"] >= 1 for r in rows)
    shown = cli_json("limits", "show", "--tenant", "dash-acme-001")
    assert (shown["tenant_id"], shown["actor"], shown["policy"]["per_hour"]) == ("dash-acme-001", "ops", 50)


def test_trials_as_json(cli_json: Any, dash_scenario: tuple[Scenario, Any]) -> None:
    """`trials list` holds every scenario trial; `trials stats` rates are fractions in JSON."""
    sc, _ = dash_scenario
    trials = {t.trial_id for t in sc.records["trial_states"]}  # type: ignore[attr-defined]
    listed = {r["trial_id"] for r in cli_json("trials", "list", "--limit", "100000")}
    assert trials <= listed
    stats = cli_json("trials", "stats")
    assert stats
    assert all(0.0 <= r["conversion_rate"] <= 1.0 for r in stats)
