"""Trial automation: state machine, event-time schedule, dunning and conversion stats (pure).

Time is event time in float epoch seconds everywhere in this package (as `pipeline.runtime.clock`);
records carry aware UTC datetimes. Entry point: `TrialBook.apply(event)` / `.advance(now)`.
"""

from agents.trials.dunning import Contact, DunningCase, DunningPolicy, DunningStatus
from agents.trials.engine import TrialBook
from agents.trials.machine import DAY, Effects, Transition, Trial, apply_event
from agents.trials.schedule import DueIndex, SchedulePolicy, SendWindow, Step, fire_due, next_due
from agents.trials.stats import CohortRow, ConversionStats, cohort_week

__all__ = [
    "DAY",
    "CohortRow",
    "Contact",
    "ConversionStats",
    "DueIndex",
    "DunningCase",
    "DunningPolicy",
    "DunningStatus",
    "Effects",
    "SchedulePolicy",
    "SendWindow",
    "Step",
    "Transition",
    "Trial",
    "TrialBook",
    "apply_event",
    "cohort_week",
    "fire_due",
    "next_due",
]
