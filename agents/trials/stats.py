"""Trial conversion by start-week cohort and plan: a pure aggregation over trial states."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from schemas.trials import TrialState, TrialStatus

__all__ = ["CohortRow", "ConversionStats", "cohort_week"]


def cohort_week(day: date) -> date:
    """The Monday (UTC) of the ISO week a trial started in."""
    return day - timedelta(days=day.weekday())


@dataclass(frozen=True, slots=True)
class CohortRow:
    week: date
    plan: str
    started: int
    converted: int
    avg_days_to_convert: float | None  # None when nobody converted

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.started if self.started else 0.0


class ConversionStats:
    """Keeps the newest state of each trial (by version), so redelivered or reordered records
    count once; `rows()` aggregates. `update` returns self, river-style."""

    def __init__(self) -> None:
        self._latest: dict[str, TrialState] = {}

    def update(self, state: TrialState) -> ConversionStats:
        seen = self._latest.get(state.trial_id)
        if seen is None or state.version > seen.version:
            self._latest[state.trial_id] = state
        return self

    def update_many(self, states: Iterable[TrialState]) -> ConversionStats:
        for s in states:
            self.update(s)
        return self

    def rows(self) -> list[CohortRow]:
        groups: dict[tuple[date, str], list[TrialState]] = {}
        for s in self._latest.values():
            groups.setdefault((cohort_week(s.started_at.date()), s.plan), []).append(s)
        out = []
        for (week, plan), states in sorted(groups.items()):
            waits = [
                (s.converted_at - s.started_at).total_seconds() / 86_400
                for s in states
                if s.status is TrialStatus.CONVERTED and s.converted_at is not None
            ]
            out.append(CohortRow(week, plan, len(states), len(waits), sum(waits) / len(waits) if waits else None))
        return out
