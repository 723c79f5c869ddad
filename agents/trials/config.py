"""Settings of the trial agent, from `TW_TRIALS_*` environment variables."""

from __future__ import annotations

from datetime import time

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.trials.dunning import DunningPolicy
from agents.trials.machine import DAY
from agents.trials.schedule import SchedulePolicy, SendWindow

__all__ = ["TrialsConfig"]


class TrialsConfig(BaseSettings):
    """Schedule and dunning policies; e.g. `TW_TRIALS_SUSPEND_GRACE_DAYS=2`."""

    model_config = SettingsConfigDict(env_prefix="TW_TRIALS_", extra="ignore", frozen=True)

    first_reminder_days: float = Field(default=7.0, gt=0)  # before the trial ends
    last_reminder_days: float = Field(default=1.0, gt=0)
    min_gap_days: float = Field(default=1.0, ge=0)  # a reminder only this long after the start
    suspend_grace_days: float = Field(default=0.0, ge=0)  # between expired and suspended
    send_window_start: time | None = None  # e.g. 09:00: reminders wait for local office hours
    send_window_end: time = time(20)
    dunning_reminders_after_days: tuple[float, ...] = (3.0, 5.0)
    dunning_grace_days: float = Field(default=7.0, gt=0)
    dunning_max_failures: int | None = Field(default=None, ge=1)
    # Wall-clock seconds between idle ticks; they only move time when TW_IDLE_TICK_S is set.
    tick_s: float = Field(default=1.0, gt=0)

    def schedule(self) -> SchedulePolicy:
        window = None if self.send_window_start is None else SendWindow(self.send_window_start, self.send_window_end)
        return SchedulePolicy(
            first_reminder=self.first_reminder_days * DAY,
            last_reminder=self.last_reminder_days * DAY,
            min_gap=self.min_gap_days * DAY,
            suspend_grace=self.suspend_grace_days * DAY,
            window=window,
        )

    def dunning(self) -> DunningPolicy:
        return DunningPolicy(
            reminders_after=tuple(d * DAY for d in self.dunning_reminders_after_days),
            grace=self.dunning_grace_days * DAY,
            max_failures=self.dunning_max_failures,
        )
