"""Injected scenarios: each reshapes chunks or adds events, and states its own ground truth."""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Protocol

import numpy as np

from pipeline.devstack.generator._traffic import (
    CHARGE_AMOUNT_SIGMA,
    CHARGE_TYPES,
    Chunk,
    RequestBatch,
    RouteTable,
)
from pipeline.devstack.generator.config import AbuseBurst, ErrorSpike, RevenueDrop, TrialCohort, UsageSpike
from pipeline.devstack.generator.tenants import PLAN_PRICES_USD_MINOR, Population, Tenant

__all__ = [
    "MS_PER_HOUR",
    "OUTCOMES",
    "AbuseScenario",
    "BillingRecord",
    "ErrorSpikeScenario",
    "RevenueDropScenario",
    "Scenario",
    "Trial",
    "TrialCohortScenario",
    "UsageSpikeScenario",
    "iso",
]

MS_PER_HOUR = 3_600_000
# Abusers come from documentation ranges, so they never collide with ordinary client pools.
_ABUSER_V4 = [int(IPv4Address(n)) for n in ("203.0.113.0", "198.51.100.0", "192.0.2.0")]
_ABUSER_V6 = 0x20010DB8FFFF << 80


@dataclass(frozen=True, slots=True)
class BillingRecord:
    """A billing event before the engine gives it an id and a timestamp string."""

    ms: int  # since the run start
    tenant_id: str
    fields: dict[str, Any]


def iso(start: datetime, ms: int) -> str:
    """The run time `ms` as ISO-8601 UTC with millisecond precision and a Z."""
    return (start + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _minute_ms(hours: float) -> int:
    return int(hours * 60) * 60_000


class Scenario(Protocol):
    kind: str

    def shape(self, chunk: Chunk) -> None: ...
    def requests(self, chunk: Chunk, rng: np.random.Generator) -> RequestBatch | None: ...
    def billing(self, chunk: Chunk) -> list[BillingRecord]: ...
    def truth(self, start: datetime) -> dict[str, Any]: ...


class _Base:
    kind = ""
    # Declared for `_window`; single-tenant scenarios define them as dataclass fields (this
    # base is no dataclass, so the annotations add no fields of their own).
    tenant: Tenant
    start_ms: int
    end_ms: int

    def shape(self, chunk: Chunk) -> None:
        return None

    def requests(self, chunk: Chunk, rng: np.random.Generator) -> RequestBatch | None:
        return None

    def billing(self, chunk: Chunk) -> list[BillingRecord]:
        return []

    def _window(self, start: datetime) -> dict[str, Any]:
        """The ground-truth fields every single-tenant scenario shares."""
        return {"kind": self.kind, "tenant_id": self.tenant.tenant_id,
                "start": iso(start, self.start_ms), "end": iso(start, self.end_ms)}


@dataclass(eq=False)
class AbuseScenario(_Base):
    """Fresh IPs sending `rate_per_hour` each to one tenant during [start_ms, end_ms)."""

    spec: AbuseBurst
    tenant: Tenant
    ip_index: list[int]
    ips: list[str]
    route: int
    start_ms: int
    end_ms: int
    kind = "abusive_ips"

    @classmethod
    def plan(cls, spec: AbuseBurst, n: int, pop: Population, routes: RouteTable) -> AbuseScenario:
        ips = []
        for j in range(spec.n_ips):
            if j % 4 == 3:  # every fourth abuser speaks IPv6
                ips.append(str(IPv6Address(_ABUSER_V6 | (n << 16) | j)))
            else:
                k = n * 256 + j  # 762 documentation addresses; plenty for a handful of bursts
                ips.append(str(IPv4Address(_ABUSER_V4[k // 254 % 3] + 1 + k % 254)))
        service = "auth" if "login" in spec.path else "api"
        route = routes.add(spec.method, spec.path, service=service, latency=60.0, size=500)
        start_ms = _minute_ms(spec.start_hour)
        return cls(
            spec=spec,
            tenant=pop.tenants[spec.tenant_rank],
            ip_index=[pop.add_ip(ip) for ip in ips],
            ips=ips,
            route=route,
            start_ms=start_ms,
            end_ms=start_ms + spec.duration_minutes * 60_000,
        )

    def requests(self, chunk: Chunk, rng: np.random.Generator) -> RequestBatch | None:
        minutes = np.flatnonzero(chunk.minute_mask(self.start_ms, self.end_ms))
        if not len(minutes):
            return None
        counts = rng.poisson(self.spec.rate_per_hour / 60.0, size=(len(self.ips), len(minutes)))
        ip = np.repeat(np.repeat(np.asarray(self.ip_index), len(minutes)), counts.ravel())
        minute = np.repeat(np.tile(minutes, len(self.ips)), counts.ravel())
        n = len(ip)
        login = "login" in self.spec.path
        # Credential stuffing mostly fails; scraping mostly succeeds.
        status = np.where(rng.random(n) < (0.9 if login else 0.05), 401 if login else 429, 200)
        return RequestBatch(
            tenant=np.full(n, self.tenant.rank, dtype=np.int64),
            ms=minute * 60_000 + rng.integers(0, 60_000, n),
            ip=ip.astype(np.int64),
            route=np.full(n, self.route, dtype=np.int64),
            user=np.full(n, -1, dtype=np.int64),
            status=status.astype(np.int64),
        )

    def truth(self, start: datetime) -> dict[str, Any]:
        return {
            **self._window(start),
            "ips": self.ips,
            "expected": {
                "rate_per_hour_per_ip": self.spec.rate_per_hour,
                "limit_per_hour": self.spec.limit_per_hour,
                "requests_per_ip": round(self.spec.rate_per_hour * self.spec.duration_minutes / 60),
                "method": self.spec.method,
                "path": self.spec.path,
                "effect": "each IP exceeds limit_per_hour inside the window: throttle, then block",
            },
        }


@dataclass(eq=False)
class RevenueDropScenario(_Base):
    """From start_ms on, a tenant's charges happen `factor` times as often."""

    spec: RevenueDrop
    tenant: Tenant
    start_ms: int
    end_ms: int
    kind = "revenue_drop"

    def shape(self, chunk: Chunk) -> None:
        chunk.charge_rate[self.tenant.rank, chunk.minute_mask(self.start_ms, self.end_ms)] *= self.spec.factor

    def truth(self, start: datetime) -> dict[str, Any]:
        success = dict(CHARGE_TYPES)["charge_succeeded"]
        mean_amount = self.tenant.price_minor * math.exp(CHARGE_AMOUNT_SIGMA**2 / 2)
        daily = self.tenant.charges_per_day * success * mean_amount
        return {
            **self._window(start),
            "expected": {
                "factor": self.spec.factor,
                "currency": self.tenant.currency,
                "daily_revenue_minor_before": round(daily),
                "daily_revenue_minor_after": round(daily * self.spec.factor),
                "effect": "successful charges and their revenue fall to `factor` of the baseline",
            },
        }


@dataclass(eq=False)
class ErrorSpikeScenario(_Base):
    """For a while, a tenant answers 5xx with `error_share` probability, and slower."""

    spec: ErrorSpike
    tenant: Tenant
    base_share: float
    start_ms: int
    end_ms: int
    kind = "error_spike"

    def shape(self, chunk: Chunk) -> None:
        mask = chunk.minute_mask(self.start_ms, self.end_ms)
        chunk.p5xx[self.tenant.rank, mask] = self.spec.error_share
        chunk.latency[self.tenant.rank, mask] *= self.spec.latency_factor

    def truth(self, start: datetime) -> dict[str, Any]:
        return {
            **self._window(start),
            "expected": {
                "error_share_baseline": self.base_share,
                "error_share_spike": self.spec.error_share,
                "latency_factor": self.spec.latency_factor,
                "effect": "share of 5xx responses and ErrorEvents (one per 5xx) jumps",
            },
        }


@dataclass(eq=False)
class UsageSpikeScenario(_Base):
    """Usage snapshots taken in [start_ms, end_ms) show multiplied storage and active users."""

    spec: UsageSpike
    tenant: Tenant
    start_ms: int
    end_ms: int
    kind = "usage_spike"

    def shape(self, chunk: Chunk) -> None:
        if self.start_ms <= chunk.snapshot_ms < self.end_ms:
            chunk.storage_factor[self.tenant.rank] *= self.spec.storage_factor
            chunk.users_factor[self.tenant.rank] *= self.spec.users_factor

    def truth(self, start: datetime) -> dict[str, Any]:
        return {
            **self._window(start),
            "expected": {
                "storage_factor": self.spec.storage_factor,
                "users_factor": self.spec.users_factor,
                "effect": "hourly usage snapshots in the window jump by the factors",
            },
        }


_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Linus")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman")
_ZONES = (("America/Chicago", "USD", 1.0), ("Europe/Paris", "EUR", 0.92), ("Asia/Singapore", "SGD", 1.35))
OUTCOMES = ("converted", "expired", "canceled", "payment_failed")


@dataclass(frozen=True, slots=True)
class Trial:
    tenant_id: str
    outcome: str
    started_ms: int
    ends_ms: int
    outcome_ms: int
    email: str
    name: str
    timezone: str
    currency: str
    price_minor: int


@dataclass(eq=False)
class TrialCohortScenario(_Base):
    """New tenants that start trials and then convert, expire, cancel or fail to pay."""

    spec: TrialCohort
    trials: list[Trial]
    records: list[BillingRecord] = field(default_factory=list)
    _ms: list[int] = field(default_factory=list, repr=False)
    kind = "trial_cohort"

    def __post_init__(self) -> None:
        self._ms = [r.ms for r in self.records]

    @classmethod
    def plan(cls, spec: TrialCohort, seed: int, n: int) -> TrialCohortScenario:
        rng = np.random.default_rng([seed, 4, n])
        shares = np.array([getattr(spec, o) for o in OUTCOMES]) * spec.size
        counts = np.floor(shares).astype(int)
        for i in np.argsort(-(shares - counts), kind="stable")[: spec.size - counts.sum()]:
            counts[i] += 1  # largest remainders, so the mix sums to the cohort size exactly
        outcomes = rng.permutation(np.repeat(np.arange(len(OUTCOMES)), counts))
        trial_ms = spec.trial_days * 24 * MS_PER_HOUR
        trials, records = [], []
        for i, o in enumerate(outcomes):
            outcome = OUTCOMES[o]
            tenant_id = f"trial-{spec.name}-{i:03d}"
            started = round((spec.start_hour + rng.uniform(0, spec.spread_hours)) * MS_PER_HOUR)
            zone, currency, fx = _ZONES[int(rng.integers(len(_ZONES)))]
            first, last = _FIRST[i % len(_FIRST)], _LAST[int(rng.integers(len(_LAST)))]
            domain = "example.com" if i % 2 == 0 else "example.org"
            t = Trial(
                tenant_id=tenant_id,
                outcome=outcome,
                started_ms=started,
                ends_ms=started + trial_ms,
                outcome_ms={
                    "converted": started + round(rng.uniform(0.3, 0.95) * trial_ms),
                    "expired": started + trial_ms,
                    "canceled": started + round(rng.uniform(0.1, 0.9) * trial_ms),
                    "payment_failed": started + trial_ms + int(rng.integers(60_000, 30 * 60_000)),
                }[outcome],
                email=f"{first.lower()}.{last.lower()}{i}@{domain}",
                name=f"{first} {last}",
                timezone=zone,
                currency=currency,
                price_minor=round(PLAN_PRICES_USD_MINOR.get(spec.plan, 9_900) * fx),
            )
            trials.append(t)
            records.extend(cls._events(spec, t))
        records.sort(key=lambda r: r.ms)
        return cls(spec=spec, trials=trials, records=records)

    @staticmethod
    def _events(spec: TrialCohort, t: Trial) -> list[BillingRecord]:
        start = BillingRecord(
            t.started_ms,
            t.tenant_id,
            {
                "type": "trial_started",
                "plan": spec.plan,
                "trial_days": spec.trial_days,
                "contact_email": t.email,
                "contact_name": t.name,
                "timezone": t.timezone,
            },
        )
        money = {"plan": spec.plan, "amount_minor": t.price_minor, "currency": t.currency}
        if t.outcome == "converted":
            return [
                start,
                BillingRecord(t.outcome_ms, t.tenant_id, {"type": "trial_converted", "plan": spec.plan}),
                BillingRecord(t.outcome_ms + 1_000, t.tenant_id, {"type": "charge_succeeded", **money}),
            ]
        if t.outcome == "canceled":
            return [start, BillingRecord(t.outcome_ms, t.tenant_id, {"type": "trial_canceled"})]
        if t.outcome == "payment_failed":
            return [start, BillingRecord(t.outcome_ms, t.tenant_id, {"type": "charge_failed", **money})]
        return [start]  # expired: silence; the trial agent's timer notices

    def billing(self, chunk: Chunk) -> list[BillingRecord]:
        key = self._ms
        return self.records[bisect_left(key, chunk.t0_ms) : bisect_left(key, chunk.snapshot_ms + 1)]

    def truth(self, start: datetime) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tenant_id": None,
            "cohort": self.spec.name,
            "start": iso(start, min(t.started_ms for t in self.trials)),
            "end": iso(start, max(t.outcome_ms for t in self.trials)),
            "expected": {o: sum(t.outcome == o for t in self.trials) for o in OUTCOMES},
            "trials": [
                {
                    "tenant_id": t.tenant_id,
                    "outcome": t.outcome,
                    "started": iso(start, t.started_ms),
                    "trial_ends": iso(start, t.ends_ms),
                    "outcome_ts": iso(start, t.outcome_ms),
                    "plan": self.spec.plan,
                    "trial_days": self.spec.trial_days,
                    "contact_email": t.email,
                }
                for t in self.trials
            ],
        }
