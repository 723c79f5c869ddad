"""Merge tenants, seasonality and scenarios into one stream of events in event-time order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from pipeline.devstack.generator._traffic import (
    CHARGE_AMOUNT_SIGMA,
    CHARGE_TYPES,
    CHUNK_MINUTES,
    ERROR_TYPES,
    Chunk,
    RequestBatch,
    RouteTable,
    draw_statuses,
)
from pipeline.devstack.generator.config import GeneratorConfig
from pipeline.devstack.generator.scenarios import (
    MS_PER_HOUR,
    AbuseScenario,
    ErrorSpikeScenario,
    RevenueDropScenario,
    Scenario,
    TrialCohortScenario,
    UsageSpikeScenario,
    iso,
)
from pipeline.devstack.generator.seasonality import minute_profile
from pipeline.devstack.generator.tenants import Population, build_population
from schemas.events import EVENT_ADAPTER, BillingEvent, ErrorEvent, RequestEvent, UsageEvent

__all__ = ["Plan", "build_plan", "generate", "ground_truth", "iter_events", "iter_records"]

Record = dict[str, Any]
Event = RequestEvent | BillingEvent | ErrorEvent | UsageEvent

# "SS.mmmZ" for every millisecond of a minute: a timestamp is then two string concatenations.
_SUFFIX = [f"{s:02d}.{ms:03d}Z" for s in range(60) for ms in range(1000)]
_EMPTY_BODY = np.array([204, 304])


@dataclass(eq=False)
class Plan:
    """Everything decided before the first event: population, routes, scheduled scenarios."""

    config: GeneratorConfig
    population: Population
    routes: RouteTable
    scenarios: list[Scenario]


def build_plan(config: GeneratorConfig) -> Plan:
    """Decide the tenants and scenarios of `config`; pure function of the config."""
    pop = build_population(config.seed, config.n_tenants, config.peak_rpm, config.charges_per_day)
    routes = RouteTable.default(np.random.default_rng([config.seed, 3]))
    end_ms = config.days * 24 * MS_PER_HOUR
    sc = config.scenarios
    tenants = pop.tenants

    def minute(hours: float) -> int:
        return int(hours * 60) * 60_000

    scenarios: list[Scenario] = []
    scenarios += [AbuseScenario.plan(s, n, pop, routes) for n, s in enumerate(sc.abuse)]
    scenarios += [
        RevenueDropScenario(s, tenants[s.tenant_rank], minute(s.start_hour), end_ms) for s in sc.revenue_drops
    ]
    scenarios += [
        ErrorSpikeScenario(
            s,
            tenants[s.tenant_rank],
            config.base_error_share,
            minute(s.start_hour),
            minute(s.start_hour + s.duration_hours),
        )
        for s in sc.error_spikes
    ]
    scenarios += [
        UsageSpikeScenario(s, tenants[s.tenant_rank], minute(s.start_hour), minute(s.start_hour + s.duration_hours))
        for s in sc.usage_spikes
    ]
    scenarios += [TrialCohortScenario.plan(s, config.seed, n) for n, s in enumerate(sc.trial_cohorts)]
    return Plan(config=config, population=pop, routes=routes, scenarios=scenarios)


def ground_truth(config: GeneratorConfig) -> dict[str, Any]:
    """Every injected scenario with tenant, kind, start/end, IPs and expected effect; JSON-ready."""
    plan = build_plan(config)
    seen: dict[str, int] = {}
    scenarios = []
    for s in plan.scenarios:
        n = seen[s.kind] = seen.get(s.kind, -1) + 1
        scenarios.append({"id": f"{s.kind}-{n}", **s.truth(config.start)})
    return {
        "seed": config.seed,
        "start": iso(config.start, 0),
        "end": iso(config.end, 0),
        "config": config.model_dump(mode="json"),
        "tenants": [
            {
                "tenant_id": t.tenant_id,
                "rank": t.rank,
                "size": t.size,
                "plan": t.plan,
                "currency": t.currency,
                "timezone": t.timezone,
                "peak_rpm": round(t.peak_rpm, 3),
                "charges_per_day": round(t.charges_per_day, 3),
                "n_ips": t.ip_slice.stop - t.ip_slice.start,
                "n_users": t.user_slice.stop - t.user_slice.start,
            }
            for t in plan.population.tenants
        ],
        "scenarios": scenarios,
    }


def iter_records(config: GeneratorConfig) -> Iterator[Record]:
    """JSON-ready event dicts (ts as ISO text with Z), in non-decreasing event time; fast path."""
    plan = build_plan(config)
    counters = np.zeros(len(plan.population.tenants), dtype=np.int64)
    other: dict[str, int] = {}
    for hour in range(config.days * 24):
        yield from _chunk_records(plan, hour, counters, other)


def iter_events(config: GeneratorConfig) -> Iterator[Event]:
    """The same stream as `iter_records`, each record validated into its schema model."""
    for record in iter_records(config):
        yield EVENT_ADAPTER.validate_python(record)


generate = iter_events


def _new_chunk(plan: Plan, hour: int) -> Chunk:
    cfg, tenants = plan.config, plan.population.tenants
    start = cfg.start + timedelta(hours=hour)
    profile = np.stack(
        [
            minute_profile(
                start,
                CHUNK_MINUTES,
                t.timezone,
                peak_hour=t.peak_hour,
                night_floor=t.night_floor,
                weekend_factor=t.weekend_factor,
            )
            for t in tenants
        ]
    )
    n = len(tenants)
    chunk = Chunk(
        index=hour,
        start=start,
        t0_ms=hour * MS_PER_HOUR,
        rate=profile * np.array([t.peak_rpm for t in tenants])[:, None],
        p5xx=np.full((n, CHUNK_MINUTES), cfg.base_error_share),
        latency=np.ones((n, CHUNK_MINUTES)),
        charge_rate=np.repeat(np.array([[t.charges_per_day / 1440.0] for t in tenants]), CHUNK_MINUTES, 1),
        storage_factor=np.ones(n),
        users_factor=np.ones(n),
    )
    for scenario in plan.scenarios:
        scenario.shape(chunk)
    return chunk


def _requests(plan: Plan, chunk: Chunk, rng: np.random.Generator) -> RequestBatch:
    counts = rng.poisson(chunk.rate).ravel()
    cell = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    tenant = cell // CHUNK_MINUTES
    n = len(cell)
    ordinary = RequestBatch(
        tenant=tenant,
        ms=(cell % CHUNK_MINUTES) * 60_000 + rng.integers(0, 60_000, n),
        ip=plan.population.sample_ips(tenant, rng.random(n)),
        route=plan.routes.sample(rng, n),
        user=plan.population.sample_users(tenant, rng.random(n)),
        status=np.zeros(n, dtype=np.int64),
    )
    batches = [ordinary, *(b for s in plan.scenarios if (b := s.requests(chunk, rng)) is not None)]
    names = ("tenant", "ms", "ip", "route", "user", "status")
    cols = {k: np.concatenate([getattr(b, k) for b in batches]) for k in names}
    order = np.argsort(cols["ms"], kind="stable")
    return RequestBatch(**{k: v[order] for k, v in cols.items()})


def _chunk_records(plan: Plan, hour: int, counters: np.ndarray, other: dict[str, int]) -> Iterator[Record]:
    cfg, pop, routes = plan.config, plan.population, plan.routes
    tenants = pop.tenants
    tids = [t.tenant_id for t in tenants]
    chunk = _new_chunk(plan, hour)
    rng = np.random.default_rng([cfg.seed, 2, hour])
    req = _requests(plan, chunk, rng)
    n = len(req.ms)
    minute = req.ms // 60_000
    status = np.where(req.status > 0, req.status, draw_statuses(rng, chunk.p5xx[req.tenant, minute]))
    latency = (
        np.asarray(routes.latency_ms)[req.route]
        * chunk.latency[req.tenant, minute]
        * rng.lognormal(0.0, 0.5, n)
        * np.where(status >= 500, 3.0, 1.0)
    )
    size = np.asarray(routes.bytes_)[req.route] * rng.lognormal(0.0, 0.4, n)
    size = np.where(np.isin(status, _EMPTY_BODY), 0, np.where(status >= 400, 180, size.astype(np.int64)))

    # Per-tenant ids in time order: rank of each request among its tenant's requests this hour.
    per_tenant = np.bincount(req.tenant, minlength=len(tenants))
    by_tenant = np.argsort(req.tenant, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[by_tenant] = np.arange(n) - np.repeat(np.cumsum(per_tenant) - per_tenant, per_tenant)
    seq = (counters[req.tenant] + rank).tolist()
    counters += per_tenant

    prefixes = [(chunk.start + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:") for m in range(CHUNK_MINUTES)]
    ms_list = req.ms.tolist()
    ts = [prefixes[m // 60_000] + _SUFFIX[m % 60_000] for m in ms_list]
    tenant_l, route_l, status_l = req.tenant.tolist(), req.route.tolist(), status.tolist()

    extras: list[tuple[int, str, str, Record]] = []  # (ms in chunk, tenant, id kind, record sans id)
    for i in np.flatnonzero(status >= 500).tolist():
        st, r = status_l[i], route_l[i]
        types, severity = ERROR_TYPES[st]
        extras.append(
            (
                ms_list[i],
                tids[tenant_l[i]],
                "err",
                {
                    "kind": "error",
                    "ts": ts[i],
                    "tenant_id": tids[tenant_l[i]],
                    "service": routes.services[r],
                    "error_type": types[seq[i] % len(types)],
                    "message": f"{st} on {routes.methods[r]} {routes.paths[r]}",
                    "severity": severity,
                    "path": routes.paths[r],
                },
            )
        )
    extras += _charges(plan, chunk, rng)
    for b in (b for s in plan.scenarios for b in s.billing(chunk)):
        record = {"kind": "billing", "tenant_id": b.tenant_id, **b.fields}
        extras.append((b.ms - chunk.t0_ms, b.tenant_id, "bil", record))
    extras += _usage(plan, chunk, rng, per_tenant)
    extras.sort(key=lambda e: e[0])  # stable: same-ms extras keep their order

    def stamp(e: tuple[int, str, str, Record]) -> Record:
        ms, tenant_id, short, rec = e
        key = f"{tenant_id}-{short}"
        count = other[key] = other.get(key, -1) + 1
        kind = rec.pop("kind")
        stamp_ts = rec.pop("ts", None) or prefixes[ms // 60_000] + _SUFFIX[ms % 60_000]
        return {"kind": kind, "event_id": f"{key}-{count}", "ts": stamp_ts, **rec}

    cols = (
        tenant_l,
        req.ip.tolist(),
        route_l,
        status_l,
        np.round(latency, 1).tolist(),
        size.tolist(),
        req.user.tolist(),
        seq,
        ts,
    )
    cuts = np.searchsorted(req.ms, [e[0] for e in extras], side="right").tolist() if extras else []
    lo = 0
    for cut, extra in zip(cuts, extras, strict=True):
        if cut > lo:
            yield from _request_records(plan, tids, cols, lo, cut)
            lo = cut
        yield stamp(extra)
    yield from _request_records(plan, tids, cols, lo, n)


def _request_records(plan: Plan, tids: list[str], cols: tuple[list[Any], ...], lo: int, hi: int) -> Iterator[Record]:
    ips, users = plan.population.ips, plan.population.users
    methods, paths = plan.routes.methods, plan.routes.paths
    for t, ip, r, st, lat, size, user, s, ts in zip(*(c[lo:hi] for c in cols), strict=True):
        rec = {
            "kind": "request",
            "event_id": f"{tids[t]}-req-{s}",
            "ts": ts,
            "tenant_id": tids[t],
            "ip": ips[ip],
            "method": methods[r],
            "path": paths[r],
            "status": st,
            "latency_ms": lat,
            "bytes": size,
        }
        if user >= 0:
            rec["user_id"] = users[user]
        yield rec


def _charges(plan: Plan, chunk: Chunk, rng: np.random.Generator) -> list[tuple[int, str, str, Record]]:
    counts = rng.poisson(chunk.charge_rate).ravel()
    cell = np.repeat(np.arange(len(counts)), counts)
    n = len(cell)
    names = [t for t, _ in CHARGE_TYPES]
    kinds = rng.choice(len(names), size=n, p=[p for _, p in CHARGE_TYPES]).tolist()
    ms = ((cell % CHUNK_MINUTES) * 60_000 + rng.integers(0, 60_000, n)).tolist()
    noise = rng.lognormal(0.0, CHARGE_AMOUNT_SIGMA, n).tolist()
    out = []
    for c, k, m, x in zip((cell // CHUNK_MINUTES).tolist(), kinds, ms, noise, strict=True):
        t = plan.population.tenants[c]
        out.append(
            (
                m,
                t.tenant_id,
                "bil",
                {
                    "kind": "billing",
                    "tenant_id": t.tenant_id,
                    "type": names[k],
                    "plan": t.plan,
                    "amount_minor": max(1, round(t.price_minor * x)),
                    "currency": t.currency,
                },
            )
        )
    return out


def _usage(
    plan: Plan, chunk: Chunk, rng: np.random.Generator, api_calls: np.ndarray
) -> list[tuple[int, str, str, Record]]:
    elapsed_days = plan.config.day_offset + (chunk.snapshot_ms + 1) / (24 * MS_PER_HOUR)
    activity = chunk.rate.mean(axis=1)
    noise = rng.lognormal(0.0, 0.05, len(plan.population.tenants))
    ms = chunk.snapshot_ms - chunk.t0_ms
    out = []
    for i, t in enumerate(plan.population.tenants):
        n_users = t.user_slice.stop - t.user_slice.start
        active = n_users * (0.1 + 0.8 * activity[i] / t.peak_rpm) * noise[i] * chunk.users_factor[i]
        storage = t.storage_bytes * (1 + t.storage_growth_per_day * elapsed_days) * chunk.storage_factor[i]
        out.append(
            (
                ms,
                t.tenant_id,
                "use",
                {
                    "kind": "usage",
                    "tenant_id": t.tenant_id,
                    "storage_bytes": int(storage),
                    "active_users": round(active),
                    "api_calls": int(api_calls[i]),
                },
            )
        )
    return out
