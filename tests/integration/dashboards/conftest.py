"""The dashboards scenario, inserted once into the session's chDB."""

from __future__ import annotations

from typing import Any

import pytest

from dashboards.macros import TimeRange
from tests.integration.dashboards.scenario import Scenario, build_scenario, insert_scenario


@pytest.fixture(scope="session")
def dash_scenario(chdb_client: Any) -> tuple[Scenario, dict[str, int]]:
    """The scenario and the rows inserted per table (tables that do not exist are left out)."""
    sc = build_scenario()
    return sc, insert_scenario(chdb_client, sc)


@pytest.fixture(scope="session")
def dash_range(dash_scenario: tuple[Scenario, dict[str, int]]) -> TimeRange:
    """The scenario's time range, with an interval Grafana would pick for it."""
    sc, _ = dash_scenario
    return TimeRange.around(sc.start, sc.end)
