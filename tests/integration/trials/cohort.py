"""A hand-checked trial cohort over 30 simulated days: billing events and the mails and tenant
commands they must cause (default policies: reminders 7 and 1 days before the end, no send
window, suspension at expiry, dunning mails on days 0, 3 and 5 of a case, suspension on day 7).

    day   0        3       7        10        13   14   15   16  17  18   20   22   25    30
    conv  start                      convert                              (welcome, 7-day)
    exp   start             7-day              1-day exp+suspend
    can   start    cancel+suspend                                         (welcome)
    pay   start             7-day    convert             fail      rem  rem  suspend paid→unsuspend
    late                             start(7d)           1-day exp+suspend
    clock ticks every 2 h on every partition until day 30 (charge_succeeded: ignored by trials)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agents.trials.schedule import local_text
from pipeline.cli.trials import keys_per_partition

T0 = datetime(2026, 3, 2, tzinfo=UTC).timestamp()  # a Monday
DAY, HOUR = 86_400.0, 3_600.0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass
class Cohort:
    events: list[dict[str, Any]] = field(default_factory=list)
    mails: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # recipient → [(kind, subject)]
    commands: dict[str, list[str]] = field(default_factory=dict)  # tenant → actions in order
    outcomes: dict[str, str] = field(default_factory=dict)  # tenant → final trial status

    @property
    def mail_count(self) -> int:
        return sum(len(v) for v in self.mails.values())

    def add(self, kind: str, tenant: str, at: float, **fields: Any) -> None:
        self.events.append({"kind": "billing", "event_id": f"{tenant}-{kind}-{int(at)}", "ts": iso(at),
                            "tenant_id": tenant, "type": kind, **fields})

    def start(self, tenant: str, at: float, days: int = 14, name: str = "Owner") -> tuple[str, float]:
        email = f"owner@{tenant}.example"
        self.add("trial_started", tenant, at, plan="pro", trial_days=days, contact_email=email, contact_name=name)
        return email, at + days * DAY


def build(tag: str, n: int = 1, days: int = 30, partitions: int = 4) -> Cohort:
    c = Cohort()
    for i in range(n):
        base = T0 + HOUR + i * 600.0
        t = f"{tag}-conv{i}"
        mail, end = c.start(t, base)
        c.add("trial_converted", t, base + 10 * DAY)
        c.mails[mail] = [("welcome", f"Welcome! Your pro trial runs until {local_text(end, 'UTC')}"),
                         ("trial_7day", "7 days left in your pro trial")]
        c.outcomes[t] = "converted"

        t = f"{tag}-exp{i}"
        mail, end = c.start(t, base + HOUR)
        c.mails[mail] = [("welcome", f"Welcome! Your pro trial runs until {local_text(end, 'UTC')}"),
                         ("trial_7day", "7 days left in your pro trial"),
                         ("trial_1day", f"Last chance: your pro trial ends {local_text(end, 'UTC')}"),
                         ("trial_expired", "Your pro trial has ended")]
        c.commands[t] = ["suspend"]
        c.outcomes[t] = "suspended"

        t = f"{tag}-can{i}"
        mail, end = c.start(t, base + 2 * HOUR)
        c.add("trial_canceled", t, base + 3 * DAY)
        c.mails[mail] = [("welcome", f"Welcome! Your pro trial runs until {local_text(end, 'UTC')}")]
        c.commands[t] = ["suspend"]
        c.outcomes[t] = "canceled"

        t = f"{tag}-pay{i}"
        mail, end = c.start(t, base + 3 * HOUR)
        c.add("trial_converted", t, base + 10 * DAY)
        c.add("charge_failed", t, base + 15 * DAY, amount_minor=4900, currency="EUR")
        c.add("charge_succeeded", t, base + 25 * DAY, amount_minor=4900, currency="EUR")
        c.mails[mail] = [("welcome", f"Welcome! Your pro trial runs until {local_text(end, 'UTC')}"),
                         ("trial_7day", "7 days left in your pro trial"),
                         *[("payment_failed", f"Payment of 49.00 EUR failed (notice {k})") for k in (1, 2, 3)]]
        c.commands[t] = ["suspend", "unsuspend"]
        c.outcomes[t] = "converted"

        t = f"{tag}-late{i}"
        mail, end = c.start(t, base + 10 * DAY, days=7)
        c.mails[mail] = [("welcome", f"Welcome! Your pro trial runs until {local_text(end, 'UTC')}"),
                         ("trial_1day", f"Last chance: your pro trial ends {local_text(end, 'UTC')}"),
                         ("trial_expired", "Your pro trial has ended")]
        c.commands[t] = ["suspend"]
        c.outcomes[t] = "suspended"
    clocks = keys_per_partition(partitions, prefix=f"{tag}-clock")
    for k in range(days * 12 + 1):
        for key in clocks.values():
            c.add("charge_succeeded", key, T0 + k * 2 * HOUR, amount_minor=1, currency="EUR")
    c.events.sort(key=lambda e: e["ts"])
    return c


def mails_by_recipient(messages: list[Any]) -> dict[str, list[tuple[str, str]]]:
    """Received mails per recipient as (kind, subject), in the order their steps became due."""
    out: dict[str, list[tuple[Any, str, str]]] = {}
    for m in messages:
        out.setdefault(str(m["To"]), []).append((m["Date"].datetime, str(m["X-Tenantwatch-Kind"]), str(m["Subject"])))
    return {r: [(k, s) for _, k, s in sorted(v)] for r, v in out.items()}
