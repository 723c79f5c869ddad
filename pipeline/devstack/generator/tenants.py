"""A population of tenants of different sizes, each with plan, currency, zone, client IPs and users."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

import numpy as np
import numpy.typing as npt

__all__ = ["PLAN_PRICES_USD_MINOR", "Population", "Tenant", "build_population"]

# Monthly list price per plan in US cents; converted per tenant currency by _REGIONS' rate.
PLAN_PRICES_USD_MINOR = {"starter": 2_900, "growth": 9_900, "enterprise": 49_900}
# (IANA zone, currency, units of that currency's minor unit per US cent)
_REGIONS = (
    ("America/New_York", "USD", 1.0),
    ("America/Los_Angeles", "USD", 1.0),
    ("America/Sao_Paulo", "BRL", 5.0),
    ("Europe/Berlin", "EUR", 0.92),
    ("Europe/London", "GBP", 0.79),
    ("Asia/Tokyo", "JPY", 1.5),  # the yen has no minor unit: 1 cent ≈ 1.5 yen
    ("Asia/Kolkata", "INR", 83.0),
    ("Australia/Sydney", "AUD", 1.5),
)
_NAMES = (
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "vandelay",
    "oscorp",
    "aperture",
    "massive",
    "gringotts",
    "monarch",
    "pied-piper",
    "dunder",
    "bluth",
    "krusty",
    "nakatomi",
    "sterling",
    "prestige",
    "octan",
    "vehement",
    "duff",
)
_SIZE_WEIGHT = {"large": 8.0, "medium": 2.0, "small": 0.4}
_SIZE_PLAN = {"large": "enterprise", "medium": "growth", "small": "starter"}
_SIZE_STORAGE = {"large": 2e12, "medium": 2e11, "small": 1e10}
# Ordinary clients stay far below a 1000/h limit: at most this many requests/h expected per IP.
_MAX_IP_RATE_PER_HOUR = 25.0
_IPV6_SHARE = 0.15
_ANONYMOUS_SHARE = 0.25
_CGNAT_BASE = int(IPv4Address("100.64.0.0"))
_CGNAT_SIZE = 1 << 22
_IP_STRIDE = 2_654_435  # odd, so i ↦ i * stride mod 2^22 is a bijection: unique, scattered IPs


@dataclass(frozen=True, slots=True, eq=False)
class Tenant:
    """One established tenant; `rank` 0 is the largest."""

    rank: int
    tenant_id: str
    size: str
    peak_rpm: float
    plan: str
    price_minor: int
    currency: str
    timezone: str
    peak_hour: float
    night_floor: float
    weekend_factor: float
    charges_per_day: float
    storage_bytes: float
    storage_growth_per_day: float
    ip_slice: slice  # into Population.ips
    user_slice: slice  # into Population.users


@dataclass(eq=False)
class Population:
    """The tenants plus flat IP and user tables that numpy indexes into."""

    tenants: list[Tenant]
    ips: list[str]
    users: list[str]
    # Per-tenant IP cumulative weights, tenant t's segment shifted by +t (see sample_ips).
    ip_cdf: npt.NDArray[np.float64] = field(repr=False)

    def sample_ips(self, tenant: npt.NDArray[np.int64], u: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Global IP indices drawn from each tenant's own weighted pool, given uniforms `u`."""
        return np.searchsorted(self.ip_cdf, tenant + u, side="right").astype(np.int64)

    def sample_users(self, tenant: npt.NDArray[np.int64], u: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Global user indices (-1 for anonymous requests) given uniforms `u`."""
        starts = np.array([t.user_slice.start for t in self.tenants], dtype=np.int64)
        counts = np.array([t.user_slice.stop - t.user_slice.start for t in self.tenants], dtype=np.int64)
        scaled = u / (1.0 - _ANONYMOUS_SHARE)
        picked = starts[tenant] + np.minimum((scaled * counts[tenant]).astype(np.int64), counts[tenant] - 1)
        return np.where(scaled < 1.0, picked, -1)

    def add_ip(self, ip: str) -> int:
        """Register an IP outside every tenant's pool (e.g. an abuser) and return its index."""
        self.ips.append(ip)
        return len(self.ips) - 1


def _sizes(n: int) -> list[str]:
    n_large = max(1, round(0.1 * n))
    n_medium = min(n - n_large, round(0.3 * n))
    return ["large"] * n_large + ["medium"] * n_medium + ["small"] * (n - n_large - n_medium)


def _ip_weights(rng: np.random.Generator, peak_per_hour: float) -> npt.NDArray[np.float64]:
    n = max(8, math.ceil(peak_per_hour / _MAX_IP_RATE_PER_HOUR))
    while True:
        w = np.minimum(rng.lognormal(0.0, 0.5, n), 2.5)
        if peak_per_hour * w.max() / w.sum() <= _MAX_IP_RATE_PER_HOUR:
            weights: npt.NDArray[np.float64] = w / w.sum()
            return weights
        n = math.ceil(n * 1.3)


def build_population(seed: int, n_tenants: int, peak_rpm: float, charges_per_day: float) -> Population:
    """Tenants sorted by size (largest first); rates scaled so their mean peak is `peak_rpm`."""
    rng = np.random.default_rng([seed, 1])
    sizes = _sizes(n_tenants)
    weights = np.array([_SIZE_WEIGHT[s] for s in sizes]) * rng.lognormal(0.0, 0.25, n_tenants)
    weights /= weights.mean()
    order = np.argsort(-weights, kind="stable")
    names = [_NAMES[i] for i in rng.permutation(len(_NAMES))]

    tenants: list[Tenant] = []
    ips: list[str] = []
    users: list[str] = []
    cdfs: list[npt.NDArray[np.float64]] = []
    ip_cursor = int(rng.integers(_CGNAT_SIZE))
    for rank, idx in enumerate(order):
        size, w = sizes[idx], float(weights[idx])
        zone, currency, fx = _REGIONS[int(rng.integers(len(_REGIONS)))]
        plan = _SIZE_PLAN[size] if rng.random() < 0.8 else str(rng.choice(list(PLAN_PRICES_USD_MINOR)))
        tenant_rpm = peak_rpm * w

        ip_w = _ip_weights(rng, tenant_rpm * 60.0)
        is_v6 = rng.random(len(ip_w)) < _IPV6_SHARE
        ip_start = len(ips)
        for v6 in is_v6:
            if v6:
                low = int(rng.integers(1, 1 << 63))
                ips.append(str(IPv6Address((0x20010DB8 << 96) | ((rank + 1) << 64) | low)))
            else:
                ip_cursor = (ip_cursor + _IP_STRIDE) % _CGNAT_SIZE
                ips.append(str(IPv4Address(_CGNAT_BASE + ip_cursor)))
        cdf = np.cumsum(ip_w)
        cdf[-1] = 1.0
        cdfs.append(cdf + rank)

        n_users = max(5, round(60 * w))
        user_start = len(users)
        users.extend(f"u{j:05d}" for j in range(n_users))

        tenants.append(
            Tenant(
                rank=rank,
                tenant_id=f"{names[rank % len(names)]}-{rank:03d}",
                size=size,
                peak_rpm=tenant_rpm,
                plan=plan,
                price_minor=round(PLAN_PRICES_USD_MINOR[plan] * fx),
                currency=currency,
                timezone=zone,
                peak_hour=float(rng.uniform(13.0, 16.5)),
                night_floor=float(rng.uniform(0.04, 0.12)),
                weekend_factor=float(rng.uniform(0.35, 0.7)),
                charges_per_day=charges_per_day * w,
                storage_bytes=_SIZE_STORAGE[size] * float(rng.lognormal(0.0, 0.4)),
                storage_growth_per_day=float(rng.uniform(0.002, 0.01)),
                ip_slice=slice(ip_start, len(ips)),
                user_slice=slice(user_start, len(users)),
            )
        )
    return Population(tenants=tenants, ips=ips, users=users, ip_cdf=np.concatenate(cdfs))
