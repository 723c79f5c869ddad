"""Records the trial agent emits: trial state changes and tenant suspend/unsuspend commands."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from schemas._base import Record, ShortText, TenantId, Timestamp

__all__ = ["CommandSource", "TenantAction", "TenantCommand", "TrialState", "TrialStatus"]


class TrialStatus(StrEnum):
    """Where a trial stands. `converted`, `canceled` and `suspended` are where trials come to rest."""

    TRIALING = "trialing"
    CONVERTED = "converted"
    CANCELED = "canceled"
    EXPIRED = "expired"
    SUSPENDED = "suspended"


class TenantAction(StrEnum):
    SUSPEND = "suspend"
    UNSUSPEND = "unsuspend"


class CommandSource(StrEnum):
    TRIAL = "trial"
    DUNNING = "dunning"


class TrialState(Record):
    """A snapshot of one trial, emitted on each change; `(trial_id, version)` orders them."""

    id: str  # stable_id(trial_id, version)
    trial_id: str
    tenant_id: TenantId
    plan: Annotated[str, StringConstraints(max_length=32)]
    status: TrialStatus
    previous: TrialStatus | None
    version: Annotated[int, Field(ge=0)]
    started_at: Timestamp
    ends_at: Timestamp
    converted_at: Timestamp | None = None
    ts: Timestamp  # event time of the change
    reason: ShortText = ""


class TenantCommand(Record):
    """Suspend or unsuspend a tenant; upstream apps enforce it (keyed by tenant)."""

    id: str  # stable_id(source, case id, action): redelivery of the same cause gives the same id
    tenant_id: TenantId
    action: TenantAction
    source: CommandSource
    reason: ShortText
    ts: Timestamp
    trial_id: str | None = None
