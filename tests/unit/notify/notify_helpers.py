"""Sample notifications for the notify tests: one valid variable set per template."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.notify import Notification, Severity, VariableValue

TS = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

SAMPLES: dict[str, dict[str, VariableValue]] = {
    "welcome": {
        "tenant_id": "acme",
        "contact_name": "Ann",
        "plan": "pro",
        "trial_days": 14,
        "trial_end": "2026-03-16 12:00 UTC",
        "days_left": 14,
    },
    "trial_7day": {
        "tenant_id": "acme",
        "contact_name": "Ann",
        "plan": "pro",
        "trial_days": 14,
        "trial_end": "2026-03-16 12:00 UTC",
        "days_left": 7,
    },
    "trial_1day": {
        "tenant_id": "acme",
        "contact_name": "",
        "plan": "pro",
        "trial_days": 14,
        "trial_end": "2026-03-16 12:00 UTC",
        "days_left": 1,
    },
    "trial_expired": {
        "tenant_id": "acme",
        "contact_name": "Ann",
        "plan": "pro",
        "trial_days": 14,
        "trial_end": "2026-03-16 12:00 UTC",
    },
    "payment_failed": {
        "tenant_id": "acme",
        "contact_name": "Ann",
        "amount": "49.00 EUR",
        "attempt": 2,
        "grace_end": "2026-03-09 12:00 UTC",
        "days_left": 4,
    },
    "anomaly_alert": {
        "tenant_id": "acme",
        "metric": "error_rate",
        "value": 0.31,
        "baseline": 0.02,
        "severity": "critical",
        "detected_at": "2026-03-02 12:00 UTC",
        "description": "Error rate 15x above its baseline for 10 minutes.",
    },
    "ban_notice": {"tenant_id": "acme", "ip": "203.0.113.9", "reason": "429 storm", "until": "2026-03-02 13:00 UTC"},
    "alert_digest": {
        "tenant_id": "acme",
        "count": 12,
        "folded": 2,
        "summary": "line one\nline two",
        "window_start": "2026-03-02 12:00 UTC",
        "window_end": "2026-03-02 13:00 UTC",
    },
}


def notification(kind: str = "welcome", **changes: Any) -> Notification:
    fields: dict[str, Any] = {
        "id": f"n-{kind}",
        "kind": kind,
        "recipient": "owner@acme.example",
        "tenant_id": "acme",
        "variables": dict(SAMPLES[kind]),
        "severity": Severity.INFO,
        "ts": TS,
    }
    fields.update(changes)
    return Notification(**fields)
