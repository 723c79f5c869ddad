"""Helpers for the trial tests: billing-event factory and event-time constants (epoch seconds)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from schemas.events import BillingEvent, BillingType

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC).timestamp()  # a Monday
DAY = 86_400.0
HOUR = 3_600.0

BillingFactory = Callable[..., BillingEvent]


def billing_factory() -> BillingFactory:
    """`billing(type, tenant, at, **fields)`: a valid BillingEvent with a fresh event id."""
    ids = itertools.count()

    def make(kind: str, tenant: str, at: float, **fields: Any) -> BillingEvent:
        t = BillingType(kind)
        base: dict[str, Any] = {}
        if t is BillingType.TRIAL_STARTED:
            base = {"plan": "pro", "trial_days": 14, "contact_email": f"owner@{tenant}.example"}
        if t in (BillingType.CHARGE_FAILED, BillingType.CHARGE_SUCCEEDED, BillingType.REFUND):
            base = {"amount_minor": 4900, "currency": "EUR"}
        return BillingEvent(
            event_id=fields.pop("event_id", f"ev-{next(ids)}"),
            ts=datetime.fromtimestamp(at, UTC),
            tenant_id=tenant,
            type=t,
            **{**base, **fields},
        )

    return make
