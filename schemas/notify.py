"""Records of the notification path: what to send (`Notification`) and what happened (`Delivery`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, StringConstraints, TypeAdapter, model_validator

from schemas._base import Record, TenantId, Timestamp
from schemas.events import Email

__all__ = ["Channel", "Delivery", "DeliveryStatus", "Notification", "Severity", "VariableValue"]

VariableValue = str | int | float | bool | None
_EMAIL: TypeAdapter[str] = TypeAdapter(Email)
VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
TemplateName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"  # gave up: retries exhausted or a non-recipient permanent error
    BOUNCED = "bounced"  # the server refused it for good (5xx)


class Notification(Record):
    """One mail or webhook to deliver; `id` is deterministic (e.g. stable_id(trial_id, step))."""

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@-]{1,96}$")]
    kind: TemplateName  # the template to render
    channel: Channel = Channel.EMAIL
    recipient: Annotated[str, StringConstraints(min_length=1, max_length=254)]
    tenant_id: TenantId
    variables: Annotated[dict[VariableName, VariableValue], Field(max_length=64)]
    severity: Severity = Severity.INFO
    ts: Timestamp  # event time at which it became due

    @model_validator(mode="after")
    def _recipient_fits_channel(self) -> Self:
        if self.channel is Channel.EMAIL:
            _EMAIL.validate_python(self.recipient)
        return self


class Delivery(Record):
    """The outcome of delivering one notification (the delivery log)."""

    id: str  # stable_id(notification_id, status, attempts)
    notification_id: str
    status: DeliveryStatus
    attempts: Annotated[int, Field(ge=0)]
    error: Annotated[str, StringConstraints(max_length=2000)] = ""
    code: int | None = None  # SMTP or HTTP status of the last answer, when there was one
    message_id: str = ""
    ts: Timestamp
