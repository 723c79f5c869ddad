"""What to generate: the seed, the simulated window, the population and the injected scenarios."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "PRESETS",
    "AbuseBurst",
    "ErrorSpike",
    "GeneratorConfig",
    "RevenueDrop",
    "Scenarios",
    "TrialCohort",
    "UsageSpike",
    "history_of",
    "preset",
]


def _aware_utc_minute(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("start must carry a time zone (UTC)")
    value = value.astimezone(UTC)
    if value.second or value.microsecond:
        raise ValueError("start must fall on a whole minute")
    return value


StartTime = Annotated[datetime, AfterValidator(_aware_utc_minute)]
Hours = Annotated[float, Field(ge=0)]
Rank = Annotated[int, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AbuseBurst(_Spec):
    """A few fresh client IPs hammering one tenant well above `limit_per_hour` for a while."""

    tenant_rank: Rank = 1  # 0 = the largest tenant
    start_hour: Hours = 10.0
    duration_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 30
    n_ips: Annotated[int, Field(ge=1, le=256)] = 3
    rate_per_hour: Annotated[int, Field(ge=1, le=10**7)] = 4000
    limit_per_hour: Annotated[int, Field(ge=1)] = 1000
    method: str = "POST"
    path: str = "/api/v1/login"


class RevenueDrop(_Spec):
    """From `start_hour` to the end, a tenant's successful charges fall to `factor` of normal."""

    tenant_rank: Rank = 0
    start_hour: Hours = 30.0
    factor: Annotated[float, Field(ge=0, lt=1)] = 0.3


class ErrorSpike(_Spec):
    """For `duration_hours` the share of 5xx responses (and so ErrorEvents) of a tenant jumps."""

    tenant_rank: Rank = 2
    start_hour: Hours = 20.0
    duration_hours: Annotated[float, Field(gt=0)] = 3.0
    error_share: Share = 0.25
    latency_factor: Annotated[float, Field(ge=1)] = 2.0


class UsageSpike(_Spec):
    """For `duration_hours` a tenant's storage and active users jump by the given factors."""

    tenant_rank: Rank = 3
    start_hour: Hours = 26.0
    duration_hours: Annotated[float, Field(gt=0)] = 6.0
    storage_factor: Annotated[float, Field(ge=1)] = 4.0
    users_factor: Annotated[float, Field(ge=1)] = 3.0


class TrialCohort(_Spec):
    """New tenants starting trials; each ends converted, expired, canceled or payment-failed."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9]{1,8}$")] = "c0"
    size: Annotated[int, Field(ge=1, le=10_000)] = 12
    start_hour: Hours = 1.0
    spread_hours: Annotated[float, Field(ge=0)] = 12.0
    trial_days: Annotated[int, Field(ge=1, le=365)] = 14
    plan: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] = "growth"
    converted: Share = 0.4
    expired: Share = 0.3
    canceled: Share = 0.1
    payment_failed: Share = 0.2

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> Self:
        total = self.converted + self.expired + self.canceled + self.payment_failed
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"outcome shares must sum to 1, got {total}")
        return self


class Scenarios(_Spec):
    """Every scenario to inject; each lands in the ground truth."""

    abuse: tuple[AbuseBurst, ...] = ()
    revenue_drops: tuple[RevenueDrop, ...] = ()
    error_spikes: tuple[ErrorSpike, ...] = ()
    usage_spikes: tuple[UsageSpike, ...] = ()
    trial_cohorts: tuple[TrialCohort, ...] = ()


class GeneratorConfig(_Spec):
    """All knobs of one generated run; the same config (seed included) gives the same events."""

    seed: int = 7
    start: StartTime = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
    days: Annotated[int, Field(ge=1, le=366)] = 2
    n_tenants: Annotated[int, Field(ge=1, le=5000)] = 6
    # Mean over tenants of requests per minute at the daily peak; tenant sizes spread around it.
    peak_rpm: Annotated[float, Field(gt=0, le=100_000)] = 1.5
    base_error_share: Share = 0.005
    # Mean over tenants of charges per day (the tenant's revenue flowing through billing).
    charges_per_day: Annotated[float, Field(ge=0, le=10**6)] = 20.0
    scenarios: Scenarios = Scenarios()
    # Days from the tenants' reference point (where their storage stands at its base size) to
    # `start`: negative for a history played before another run (`history_of`), so storage
    # keeps growing across the seam instead of starting over.
    day_offset: Annotated[float, Field(ge=-366, le=0)] = 0.0

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    @model_validator(mode="after")
    def _scenarios_fit(self) -> Self:
        horizon = self.days * 24.0
        sc = self.scenarios
        ranked: list[AbuseBurst | RevenueDrop | ErrorSpike | UsageSpike] = [
            *sc.abuse,
            *sc.revenue_drops,
            *sc.error_spikes,
            *sc.usage_spikes,
        ]
        for spec in ranked:
            if spec.tenant_rank >= self.n_tenants:
                raise ValueError(f"{type(spec).__name__}.tenant_rank {spec.tenant_rank} >= n_tenants")
            if spec.start_hour >= horizon:
                raise ValueError(f"{type(spec).__name__} starts after the simulated window")
        for burst in sc.abuse:
            if burst.start_hour + burst.duration_minutes / 60 > horizon:
                raise ValueError("AbuseBurst ends after the simulated window")
        spikes: list[ErrorSpike | UsageSpike] = [*sc.error_spikes, *sc.usage_spikes]
        for spike in spikes:
            if spike.start_hour + spike.duration_hours > horizon:
                raise ValueError(f"{type(spike).__name__} ends after the simulated window")
        names = [c.name for c in sc.trial_cohorts]
        if len(set(names)) != len(names):
            raise ValueError("trial cohort names must be unique")
        for cohort in sc.trial_cohorts:
            # The last outcome (a failed charge just after the trial ends) must be observable.
            if cohort.start_hour + cohort.spread_hours + cohort.trial_days * 24 + 1 > horizon:
                raise ValueError(f"trial cohort {cohort.name} does not finish inside the window")
        return self


def history_of(config: GeneratorConfig, days: int) -> GeneratorConfig:
    """The `days` before `config.start`: the same tenants' ordinary traffic, no scenarios.

    The owner's history as a backfill: same seed, so the same population (sizes, zones,
    plans, users); its own draws of traffic; storage grows on into the run that follows.
    """
    return config.model_copy(update={
        "start": config.start - timedelta(days=days), "days": days, "scenarios": Scenarios(),
        "day_offset": config.day_offset - days,
    })


def _tiny() -> GeneratorConfig:
    return GeneratorConfig(
        seed=7,
        days=2,
        n_tenants=6,
        peak_rpm=1.5,
        scenarios=Scenarios(
            abuse=(AbuseBurst(tenant_rank=1, start_hour=14.0, duration_minutes=20, n_ips=2),),
            revenue_drops=(RevenueDrop(tenant_rank=0, start_hour=24.0, factor=0.25),),
            error_spikes=(ErrorSpike(tenant_rank=2, start_hour=18.0, duration_hours=3.0),),
            usage_spikes=(UsageSpike(tenant_rank=3, start_hour=30.0, duration_hours=6.0),),
            trial_cohorts=(TrialCohort(size=12, start_hour=1.0, spread_hours=8.0, trial_days=1),),
        ),
    )


def _demo() -> GeneratorConfig:
    return GeneratorConfig(
        seed=42,
        days=15,
        n_tenants=24,
        peak_rpm=5.0,
        charges_per_day=30.0,
        scenarios=Scenarios(
            abuse=(
                AbuseBurst(tenant_rank=1, start_hour=4 * 24 + 15, duration_minutes=45, n_ips=3),
                AbuseBurst(
                    tenant_rank=6,
                    start_hour=9 * 24 + 10,
                    duration_minutes=90,
                    n_ips=5,
                    rate_per_hour=2500,
                    method="GET",
                    path="/api/v1/search",
                ),
            ),
            revenue_drops=(RevenueDrop(tenant_rank=0, start_hour=10 * 24, factor=0.3),),
            error_spikes=(ErrorSpike(tenant_rank=2, start_hour=7 * 24 + 14, duration_hours=4.0),),
            usage_spikes=(UsageSpike(tenant_rank=4, start_hour=11 * 24 + 9, duration_hours=8.0),),
            trial_cohorts=(
                TrialCohort(name="c0", size=20, start_hour=2.0, spread_hours=20.0, trial_days=14),
                TrialCohort(
                    name="c1",
                    size=10,
                    start_hour=24.0,
                    spread_hours=24.0,
                    trial_days=7,
                    converted=0.5,
                    expired=0.2,
                    canceled=0.1,
                    payment_failed=0.2,
                ),
            ),
        ),
    )


def _bench() -> GeneratorConfig:
    return GeneratorConfig(
        seed=1,
        days=2,
        n_tenants=60,
        peak_rpm=60.0,
        scenarios=Scenarios(
            abuse=(AbuseBurst(tenant_rank=3, start_hour=14.0, duration_minutes=60, n_ips=10, rate_per_hour=6000),),
        ),
    )


PRESETS = {"tiny": _tiny, "demo": _demo, "bench": _bench}


def preset(name: str) -> GeneratorConfig:
    """The named preset: "tiny" (fast tests), "demo" (~15 days, ~1M events), "bench" (requests)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
