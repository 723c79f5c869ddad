"""Input events that upstream apps publish: requests, billing, errors, usage."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, StringConstraints, TypeAdapter, model_validator

from schemas._base import EventId, IpAddress, Record, ShortText, TenantId, Timestamp, check_header_safe

__all__ = [
    "EVENT_ADAPTER",
    "BillingEvent",
    "BillingType",
    "Email",
    "ErrorEvent",
    "ErrorSeverity",
    "Event",
    "HttpMethod",
    "RequestEvent",
    "UsageEvent",
]

# Deliberately simple: one @, no spaces or control characters, a dotted domain. Full RFC 5322
# is not the point; keeping header injection and obvious garbage out is.
Email = Annotated[
    str,
    StringConstraints(max_length=254, pattern=r"^[^@\s<>,;\"]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"),
    AfterValidator(check_header_safe),
]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
# IANA zone names look like Area/City; validated for shape here, resolved by the trial agent.
TimeZoneName = Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+){0,2}$")]


class HttpMethod(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"
    HEAD = "HEAD"
    OPTIONS = "OPTIONS"


class RequestEvent(Record):
    """One HTTP request served by a tenant's app; keyed `tenant_id:ip`."""

    kind: Literal["request"] = "request"
    event_id: EventId
    ts: Timestamp
    tenant_id: TenantId
    ip: IpAddress
    method: HttpMethod
    path: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    status: Annotated[int, Field(ge=100, le=599)]
    latency_ms: Annotated[float, Field(ge=0, le=3_600_000)]
    bytes: Annotated[int, Field(ge=0, le=10**12)] = 0
    user_id: Annotated[str, StringConstraints(max_length=128)] | None = None


class BillingType(StrEnum):
    TRIAL_STARTED = "trial_started"
    TRIAL_CONVERTED = "trial_converted"
    TRIAL_CANCELED = "trial_canceled"
    CHARGE_SUCCEEDED = "charge_succeeded"
    CHARGE_FAILED = "charge_failed"
    REFUND = "refund"
    SUBSCRIPTION_CANCELED = "subscription_canceled"


_MONEY_TYPES = {BillingType.CHARGE_SUCCEEDED, BillingType.CHARGE_FAILED, BillingType.REFUND}


class BillingEvent(Record):
    """A billing or trial lifecycle event; amounts in minor units (cents) with a currency."""

    kind: Literal["billing"] = "billing"
    event_id: EventId
    ts: Timestamp
    tenant_id: TenantId
    type: BillingType
    plan: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] | None = None
    trial_days: Annotated[int, Field(ge=1, le=365)] | None = None
    contact_email: Email | None = None
    contact_name: ShortText | None = None
    timezone: TimeZoneName | None = None
    amount_minor: Annotated[int, Field(ge=0, le=10**12)] | None = None
    currency: Currency | None = None

    @model_validator(mode="after")
    def _required_by_type(self) -> Self:
        if self.type is BillingType.TRIAL_STARTED:
            missing = [f for f in ("plan", "trial_days", "contact_email") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"trial_started requires {', '.join(missing)}")
        if self.type in _MONEY_TYPES and (self.amount_minor is None or self.currency is None):
            raise ValueError(f"{self.type.value} requires amount_minor and currency")
        return self


class ErrorSeverity(StrEnum):
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class ErrorEvent(Record):
    """An application error observed by a tenant's app."""

    kind: Literal["error"] = "error"
    event_id: EventId
    ts: Timestamp
    tenant_id: TenantId
    service: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    error_type: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    message: Annotated[str, StringConstraints(max_length=2000)] = ""
    severity: ErrorSeverity = ErrorSeverity.ERROR
    path: Annotated[str, StringConstraints(max_length=2048)] | None = None


class UsageEvent(Record):
    """A usage snapshot of a tenant: storage and active users at `ts`."""

    kind: Literal["usage"] = "usage"
    event_id: EventId
    ts: Timestamp
    tenant_id: TenantId
    storage_bytes: Annotated[int, Field(ge=0, le=10**18)]
    active_users: Annotated[int, Field(ge=0, le=10**9)]
    api_calls: Annotated[int, Field(ge=0, le=10**12)] | None = None


Event = Annotated[
    RequestEvent | BillingEvent | ErrorEvent | UsageEvent, Field(discriminator="kind")
]
EVENT_ADAPTER: TypeAdapter[RequestEvent | BillingEvent | ErrorEvent | UsageEvent] = TypeAdapter(Event)
