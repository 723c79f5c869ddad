"""Records of the notification path: what to send (`Notification`) and what happened (`Delivery`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import Field, StringConstraints, TypeAdapter, model_validator

from schemas._base import Record, ShortText, TenantId, Timestamp
from schemas.events import Email

__all__ = [
    "CHART_MAX_POINTS",
    "Channel",
    "ChartPoint",
    "ChartSeries",
    "Delivery",
    "DeliveryStatus",
    "Notification",
    "Severity",
    "VariableValue",
]

VariableValue = str | int | float | bool | None
_EMAIL: TypeAdapter[str] = TypeAdapter(Email)
VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
TemplateName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
Finite = Annotated[float, Field(allow_inf_nan=False)]
CHART_MAX_POINTS: Final = 120  # keeps an alert's chart payload to a few kB on the topic


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


class ChartPoint(Record):
    """One point of a metric with the baseline band it was scored against."""

    ts: Timestamp
    value: Finite
    expected: Finite
    low: Finite
    high: Finite


class ChartSeries(Record):
    """The recent points of an alert's metric, oldest first: the notifier draws them as a PNG."""

    title: ShortText
    marker: Timestamp  # where the anomaly began (drawn as a vertical line)
    points: Annotated[tuple[ChartPoint, ...], Field(min_length=2, max_length=CHART_MAX_POINTS)]


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
    chart: ChartSeries | None = None  # anomaly alerts: the series behind the mail's inline chart

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
