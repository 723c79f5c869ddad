"""What ordinary traffic looks like: routes, status mixes, error types, charge mix; and the chunk."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

__all__ = [
    "CHARGE_AMOUNT_SIGMA",
    "CHARGE_TYPES",
    "CHUNK_MINUTES",
    "ERROR_TYPES",
    "Chunk",
    "RequestBatch",
    "RouteTable",
    "draw_statuses",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

CHUNK_MINUTES = 60
_NORMAL_STATUS = np.array([200, 201, 204, 304, 400, 401, 403, 404, 409, 422])
_NORMAL_STATUS_P = np.array([0.86, 0.03, 0.02, 0.03, 0.015, 0.01, 0.005, 0.02, 0.005, 0.005])
_5XX_STATUS = np.array([500, 502, 503, 504])
_5XX_STATUS_P = np.array([0.5, 0.15, 0.25, 0.1])
# status -> (error_type choices, severity); one ErrorEvent is logged per 5xx response.
ERROR_TYPES: dict[int, tuple[tuple[str, ...], str]] = {
    500: (("InternalServerError", "NullReferenceError", "DatabaseTimeout", "KeyError"), "error"),
    502: (("BadGateway",), "error"),
    503: (("ServiceUnavailable", "ConnectionPoolExhausted"), "critical"),
    504: (("GatewayTimeout", "UpstreamTimeout"), "error"),
}
# (type, probability) of one charge of a tenant; amounts are lognormal around the plan price.
CHARGE_TYPES = (("charge_succeeded", 0.95), ("charge_failed", 0.04), ("refund", 0.01))
CHARGE_AMOUNT_SIGMA = 0.3

# (method, path template, service, weight, median latency ms, median bytes)
_DEFAULT_ROUTES = (
    ("GET", "/api/v1/items", "api", 20.0, 35.0, 8_000),
    ("GET", "/api/v1/items/{id}", "api", 25.0, 18.0, 1_500),
    ("POST", "/api/v1/items", "api", 5.0, 60.0, 600),
    ("PATCH", "/api/v1/items/{id}", "api", 3.0, 45.0, 600),
    ("DELETE", "/api/v1/items/{id}", "api", 1.0, 30.0, 0),
    ("GET", "/api/v1/users/{id}", "accounts", 8.0, 15.0, 900),
    ("PUT", "/api/v1/users/{id}", "accounts", 1.0, 50.0, 700),
    ("GET", "/api/v1/search", "search", 8.0, 120.0, 20_000),
    ("GET", "/api/v1/reports/{id}", "reports", 2.0, 400.0, 150_000),
    ("POST", "/api/v1/login", "auth", 3.0, 80.0, 400),
    ("GET", "/health", "web", 6.0, 2.0, 20),
    ("GET", "/static/app.js", "web", 10.0, 5.0, 250_000),
    ("HEAD", "/api/v1/items", "api", 0.5, 10.0, 0),
    ("OPTIONS", "/api/v1/items", "api", 0.5, 3.0, 0),
)
_IDS_PER_TEMPLATE = 24


@dataclass(eq=False)
class RouteTable:
    """Concrete (method, path) pairs with sampling weights; scenarios may add zero-weight routes."""

    methods: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    bytes_: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)

    @classmethod
    def default(cls, rng: np.random.Generator) -> RouteTable:
        table = cls()
        for method, template, service, weight, latency, size in _DEFAULT_ROUTES:
            if "{id}" in template:
                ids = rng.choice(90_000, size=_IDS_PER_TEMPLATE, replace=False) + 10_000
                for i in ids:
                    path = template.replace("{id}", str(i))
                    table.add(
                        method,
                        path,
                        service=service,
                        latency=latency,
                        size=size,
                        weight=weight / _IDS_PER_TEMPLATE,
                    )
            else:
                table.add(method, template, service=service, latency=latency, size=size, weight=weight)
        return table

    def add(self, method: str, path: str, *, service: str, latency: float, size: float, weight: float = 0.0) -> int:
        """Register a concrete route and return its index."""
        self.methods.append(method)
        self.paths.append(path)
        self.services.append(service)
        self.latency_ms.append(latency)
        self.bytes_.append(size)
        self.weights.append(weight)
        return len(self.paths) - 1

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        p = np.asarray(self.weights)
        picked: IntArray = rng.choice(len(p), size=n, p=p / p.sum()).astype(np.int64)
        return picked


@dataclass(eq=False)
class RequestBatch:
    """Requests a scenario adds to a chunk; status 0 means "draw it like ordinary traffic"."""

    tenant: IntArray
    ms: IntArray  # within the chunk
    ip: IntArray
    route: IntArray
    user: IntArray
    status: IntArray


@dataclass(eq=False)
class Chunk:
    """One hour of the run: per tenant and minute expectations that scenarios may reshape."""

    index: int
    start: datetime
    t0_ms: int  # chunk start, ms since the run start
    rate: FloatArray  # (tenants, minutes) expected requests per minute
    p5xx: FloatArray  # (tenants, minutes) probability that a response is a 5xx
    latency: FloatArray  # (tenants, minutes) latency multiplier
    charge_rate: FloatArray  # (tenants, minutes) expected charges per minute
    storage_factor: FloatArray  # (tenants,) at this chunk's usage snapshot
    users_factor: FloatArray  # (tenants,)

    def minute_mask(self, start_ms: int, end_ms: int) -> npt.NDArray[np.bool_]:
        """Minutes of this chunk whose start lies in [start_ms, end_ms) of the run."""
        minute_ms = self.t0_ms + 60_000 * np.arange(self.rate.shape[1])
        return (minute_ms >= start_ms) & (minute_ms < end_ms)

    @property
    def snapshot_ms(self) -> int:
        """Run time of the usage snapshot: the chunk's last millisecond."""
        return self.t0_ms + 60_000 * int(self.rate.shape[1]) - 1


def draw_statuses(rng: np.random.Generator, p5xx: FloatArray) -> IntArray:
    """One HTTP status per request: a 5xx with probability `p5xx`, else the ordinary mix."""
    n = len(p5xx)
    normal = rng.choice(_NORMAL_STATUS, size=n, p=_NORMAL_STATUS_P / _NORMAL_STATUS_P.sum())
    server = rng.choice(_5XX_STATUS, size=n, p=_5XX_STATUS_P)
    return np.where(rng.random(n) < p5xx, server, normal).astype(np.int64)
