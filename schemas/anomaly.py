"""Anomaly detection records: metric points in; anomalies, status changes and baseline bands out.

Every output carries a deterministic `id` (see `schemas.results.stable_id`):
- an `Anomaly` is keyed by `(tenant, metric, episode start)`, so the repeated points of one
  episode re-emit the *same* id with a newer `last_ts` (sinks keep the latest version);
- an `AnomalyStatusChange` by `(anomaly id, new status, ts)`;
- a `BaselineBand` by `(tenant, metric, ts)`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from schemas._base import Record, ShortText, TenantId, Timestamp
from schemas.results import stable_id

__all__ = [
    "Anomaly",
    "AnomalyStatus",
    "AnomalyStatusChange",
    "BaselineBand",
    "Direction",
    "MetricName",
    "MetricPoint",
    "Rule",
    "RuleChange",
    "Season",
    "Severity",
    "Verdict",
    "anomaly_id",
    "band_id",
    "rule_change_id",
    "status_change_id",
    "to_datetime",
]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("value must be finite (no NaN or infinity)")
    return value


Finite = Annotated[float, AfterValidator(_finite)]
NonNegative = Annotated[float, Field(ge=0), AfterValidator(_finite)]


class MetricName(StrEnum):
    """The per-tenant metrics the anomaly agent watches (one rollup point per interval)."""

    REQUEST_VOLUME = "request_volume"  # requests per interval
    ERROR_RATE = "error_rate"  # errors / requests, 0..1
    LATENCY_P95 = "latency_p95"  # ms, streaming quantile over the interval
    REVENUE = "revenue"  # charges − refunds per interval
    ACTIVE_USERS = "active_users"  # distinct users in the interval
    STORAGE_BYTES = "storage_bytes"  # last usage snapshot
    CANCELLATIONS = "cancellations"  # churn signal: cancellations per interval
    ACTIVE_USER_DECLINE = "active_user_decline"  # churn signal: 1 − active users / trailing mean
    TOP_IP_SHARE = "top_ip_share"  # API abuse: share of requests from the top few IPs, 0..1
    CLIENT_ERROR_RATIO = "client_error_ratio"  # API abuse: 4xx / requests, 0..1
    ERROR_EVENTS = "error_events"  # ErrorEvents reported by the tenant's app per interval


class Direction(StrEnum):
    """Which side of the baseline counts as anomalous (rules) or was observed (anomalies)."""

    UP = "up"
    DOWN = "down"
    BOTH = "both"


class Season(StrEnum):
    """Seasonal profile of a baseline: `auto` uses the daily profile only where it explains the data."""

    NONE = "none"
    DAILY = "daily"
    WEEKLY = "weekly"
    AUTO = "auto"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class AnomalyStatus(StrEnum):
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"


class Verdict(StrEnum):
    """How the univariate rule and the multivariate second opinion (HalfSpaceTrees) agree."""

    CORROBORATED = "corroborated"  # rule fired and the tenant's multivariate score is high too
    RULE_ONLY = "rule_only"  # rule fired; multivariate score low or not yet warm


def to_datetime(ts: float) -> datetime:
    """Epoch seconds (the cores' time unit) as an aware UTC datetime (the records' unit)."""
    return datetime.fromtimestamp(ts, tz=UTC)


def anomaly_id(tenant: str, metric: str, episode_start: float) -> str:
    return stable_id("anomaly", tenant, metric, repr(float(episode_start)))


def status_change_id(anomaly: str, status: str, ts: float) -> str:
    return stable_id("anomaly-status", anomaly, status, repr(float(ts)))


def band_id(tenant: str, metric: str, ts: float) -> str:
    return stable_id("band", tenant, metric, repr(float(ts)))


def rule_change_id(command_id: str) -> str:
    return stable_id("rule-change", command_id)


class MetricPoint(Record):
    """One rollup value of one tenant metric: what the anomaly agent reads from the metrics topic."""

    tenant: TenantId
    metric: MetricName
    ts: Timestamp
    value: Finite
    # A proportion's denominator (requests in the window): what its binomial noise depends on;
    # revenue's is the number of successful charges it sums (its Poisson noise depends on it).
    denominator: NonNegative | None = None

    @property
    def key(self) -> str:
        """The state key of this stream in the agent's table: `tenant|metric`."""
        return f"{self.tenant}|{self.metric.value}"

    @property
    def epoch(self) -> float:
        return self.ts.timestamp()


class Rule(Record):
    """When a metric's deviation from its baseline becomes an anomaly. Editable at runtime.

    Counts are in points of the metric's stream (one point per rollup interval).
    """

    metric: MetricName
    direction: Direction
    threshold_sigma: Annotated[float, Field(gt=0, le=100)]
    min_pct: Annotated[float, Field(ge=0, le=10_000)] = 0.0  # and |deviation| ≥ this % of expected
    warmup: Annotated[int, Field(ge=0, le=1_000_000)] = 48  # points seen before any alert ...
    # ... spanning at least this many seconds (the defaults: two days, so the day's cycle was seen)
    warmup_s: Annotated[float, Field(ge=0, le=90 * 86_400)] = 0.0
    confirm_n: Annotated[int, Field(ge=1, le=1000)] = 1  # N of the last M points exceed ...
    confirm_m: Annotated[int, Field(ge=1, le=1000)] = 1
    cooldown: Annotated[int, Field(ge=0, le=1_000_000)] = 12  # points after an episode ends, no new one
    cooldown_s: Annotated[float, Field(ge=0, le=90 * 86_400)] = 3600.0  # and seconds: both must pass
    resolve_after: Annotated[int, Field(ge=1, le=1_000_000)] = 6  # K in-band points auto-resolve
    # Also out of band when the mean score of the last `confirm_m` points passes the threshold
    # (a lasting shift of moderate points, e.g. revenue): for streams whose points are independent.
    sustained: bool = False
    # > 0: a point is out of band only if the recent scores are also this unusual for the stream
    # (agents.anomaly.likelihood); 0: off. Costs ~16 kB of state per stream.
    likelihood_sigma: Annotated[float, Field(ge=0, le=100)] = 0.0
    season: Season = Season.AUTO
    history_days: Annotated[int, Field(ge=1, le=60)] = 14  # seasonal profile window (7–30 sensible)
    enabled: bool = True

    @model_validator(mode="after")
    def _confirmable(self) -> Rule:
        if self.confirm_n > self.confirm_m:
            raise ValueError("confirm_n must not exceed confirm_m")
        return self


class Anomaly(Record):
    """One anomaly episode of one tenant metric; re-emitted with the same id as the episode grows."""

    id: str
    tenant: TenantId
    metric: MetricName
    start_ts: Timestamp  # first out-of-band point of the episode
    detected_ts: Timestamp  # point at which the rule confirmed it
    last_ts: Timestamp  # latest out-of-band point
    value: Finite  # latest out-of-band value
    expected: Finite
    sigma: NonNegative
    deviation_sigma: Finite  # signed, (value − expected) / σ, capped
    deviation_pct: Finite | None  # signed, % of |expected|; None when expected is 0
    peak_sigma: NonNegative  # largest |deviation_sigma| of the episode
    direction: Direction  # UP or DOWN: the side observed
    severity: Severity  # worst severity seen in the episode
    status: AnomalyStatus
    points: Annotated[int, Field(ge=1)]  # out-of-band points in the episode
    hst_score: Annotated[float, Field(ge=0, le=1)] | None  # tenant's multivariate score, if warm
    verdict: Verdict
    threshold_sigma: Annotated[float, Field(gt=0)]


class AnomalyStatusChange(Record):
    """A workflow transition of an anomaly, by an admin command or automatically (`actor="system"`)."""

    id: str
    anomaly_id: str
    tenant: TenantId
    metric: MetricName
    ts: Timestamp
    from_status: AnomalyStatus | None  # None when the anomaly opens
    to_status: AnomalyStatus
    actor: Annotated[str, Field(max_length=64)]
    reason: ShortText = ""


class BaselineBand(Record):
    """The baseline the point was scored against: expected ± threshold·σ (for Grafana bands)."""

    id: str
    tenant: TenantId
    metric: MetricName
    ts: Timestamp
    expected: Finite
    lower: Finite
    upper: Finite
    seasonal: bool  # whether the seasonal profile was used for this point


class RuleChange(Record):
    """A rule put in force (or reset to the default) for one tenant metric, by a `rule.set` command."""

    id: str  # from the command's nonce: a redelivered command re-emits the same id
    tenant: TenantId
    metric: MetricName
    ts: Timestamp  # when the command was signed
    actor: Annotated[str, Field(max_length=64)]
    reason: ShortText = ""
    is_default: bool  # True when the tenant's override was dropped
    direction: Direction
    threshold_sigma: Annotated[float, Field(gt=0)]
    warmup: Annotated[int, Field(ge=0)]
    enabled: bool
    rule_json: Annotated[str, Field(max_length=4096)]  # the whole rule in force
