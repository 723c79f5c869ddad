"""tenantwatch's data contracts: input events, admin commands and result records."""

from schemas.commands import Action, AdminCommand, canonical_bytes, sign, signature_ok
from schemas.events import (
    EVENT_ADAPTER,
    BillingEvent,
    BillingType,
    ErrorEvent,
    ErrorSeverity,
    Event,
    HttpMethod,
    RequestEvent,
    UsageEvent,
)
from schemas.results import AuditRecord, DeadLetter, stable_id

__all__ = [
    "EVENT_ADAPTER",
    "Action",
    "AdminCommand",
    "AuditRecord",
    "BillingEvent",
    "BillingType",
    "DeadLetter",
    "ErrorEvent",
    "ErrorSeverity",
    "Event",
    "HttpMethod",
    "RequestEvent",
    "UsageEvent",
    "canonical_bytes",
    "sign",
    "signature_ok",
    "stable_id",
]
