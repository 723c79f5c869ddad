"""Rate-limit records: tenant policy (config), decisions, violations, bans, limit history, rollups.

Every result record carries a deterministic ``id`` (``stable_id`` over what makes it unique)
so that sinks stay idempotent under at-least-once delivery. Build them with ``create``,
which fills the id in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import ip_network
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from schemas._base import IpAddress, Record, ShortText, TenantId, Timestamp
from schemas.results import stable_id

__all__ = [
    "Ban",
    "Decision",
    "DecisionState",
    "LimitConfig",
    "LimitName",
    "Rollup",
    "RollupParts",
    "TenantPolicy",
    "Violation",
    "canonical_network",
    "from_epoch",
]

DecisionState = Literal["allowed", "throttled", "banned", "blocked"]
LimitName = Literal["minute", "hour", "day"]
Count = Annotated[int, Field(ge=0)]
Limit = Annotated[int, Field(ge=0, le=10**9)]
Seconds = Annotated[float, Field(gt=0, le=365 * 86400)]
MAX_LIST_ENTRIES = 10_000  # IPs and ranges per allow or deny list: a bound on what one record may ask to check


def from_epoch(ts: float) -> datetime:
    """Aware UTC datetime from float epoch seconds (the cores' time unit)."""
    return datetime.fromtimestamp(ts, UTC)


def canonical_network(value: str) -> str:
    """Canonical text of an IP or CIDR range (``10.0.0.0/8``, ``2001:db8::/32``; a bare IP is a /32 or /128)."""
    text = value.strip()
    try:
        net = ip_network(text, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            loose = ip_network(text, strict=False)
            raise ValueError(f"{text!r} has host bits set; did you mean {loose}?") from None
        raise ValueError(f"{text!r} is not an IP address or CIDR range") from None
    return str(net)


Network = Annotated[str, AfterValidator(canonical_network)]


class TenantPolicy(Record):
    """One tenant's rate-limit configuration; ``None`` limits are off, 0 allows nothing."""

    tenant_id: TenantId
    enabled: bool = True
    shadow: bool = False  # decide and record, enforce nothing
    per_minute: Limit | None = None  # optional burst limit
    per_hour: Limit | None = 1000
    per_day: Limit | None = 10000
    whitelist: Annotated[tuple[Network, ...], Field(max_length=MAX_LIST_ENTRIES)] = ()
    blacklist: Annotated[tuple[Network, ...], Field(max_length=MAX_LIST_ENTRIES)] = ()
    # Bans: `violation_threshold` violations within `violation_period_s` ban the IP for
    # `ban_base_s`, doubled for each earlier ban (up to `ban_max_s`); the escalation level
    # is forgotten `ban_forget_s` after the last ban ended.
    violation_threshold: Annotated[int, Field(ge=1, le=10**6)] = 3
    violation_period_s: Seconds = 3600.0
    ban_base_s: Seconds = 900.0
    ban_max_s: Seconds = 86400.0
    ban_forget_s: Seconds = 7 * 86400.0

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.ban_max_s < self.ban_base_s:
            raise ValueError(f"ban_max_s ({self.ban_max_s}) must be ≥ ban_base_s ({self.ban_base_s})")
        both = set(self.whitelist) & set(self.blacklist)
        if both:
            raise ValueError(f"on both whitelist and blacklist: {', '.join(sorted(both))}")
        return self


class Decision(Record):
    """A gateway-facing decision state change for one (tenant, ip)."""

    id: str
    tenant_id: TenantId
    ip: IpAddress
    state: DecisionState
    reason: Annotated[str, Field(max_length=64)]  # blacklist, whitelist, ban, limit:hour, exhausted:hour, ok, ...
    limit: Count | None = None  # RateLimit-Limit of the binding window
    remaining: Count | None = None  # RateLimit-Remaining
    reset_ts: Timestamp | None = None  # RateLimit-Reset (absolute)
    retry_after_s: Annotated[float, Field(ge=0)] | None = None  # Retry-After
    shadow: bool = False
    ts: Timestamp

    @classmethod
    def create(cls, **fields: Any) -> Decision:
        """Fill the id from (tenant, ip, ts, state, reason)."""
        f = fields
        return cls(id=stable_id("decision", f["tenant_id"], f["ip"], f["ts"], f["state"], f["reason"]), **f)


class Violation(Record):
    """One limit exceeded by one (tenant, ip): emitted when the window first goes over."""

    id: str
    tenant_id: TenantId
    ip: IpAddress
    limit_name: LimitName
    limit: Count
    count: Count
    window_s: Annotated[float, Field(gt=0)]
    shadow: bool = False
    ts: Timestamp

    @classmethod
    def create(cls, **fields: Any) -> Violation:
        """Fill the id from (tenant, ip, limit name, ts)."""
        f = fields
        return cls(id=stable_id("violation", f["tenant_id"], f["ip"], f["limit_name"], f["ts"]), **f)


class Ban(Record):
    """A ban started or ended; ``end`` is when it ends (or ended) in event time."""

    id: str
    tenant_id: TenantId
    ip: IpAddress
    action: Literal["started", "ended"]
    reason: Literal["auto", "manual"]
    level: Annotated[int, Field(ge=0, le=64)]
    start: Timestamp
    end: Timestamp
    shadow: bool = False
    ts: Timestamp

    @classmethod
    def create(cls, **fields: Any) -> Ban:
        """Fill the id from (tenant, ip, start, action)."""
        f = fields
        return cls(id=stable_id("ban", f["tenant_id"], f["ip"], f["start"], f["action"]), **f)


class LimitConfig(Record):
    """A tenant's limit configuration as set at ``ts`` (the history of ``TenantPolicy``)."""

    id: str
    tenant_id: TenantId
    ts: Timestamp
    actor: Annotated[str, Field(max_length=64)] = "system"
    action: Annotated[str, Field(max_length=64)]
    reason: ShortText = ""
    enabled: bool
    shadow: bool
    per_minute: Count | None
    per_hour: Count | None
    per_day: Count | None
    whitelist_size: Count
    blacklist_size: Count
    policy_json: str  # the whole TenantPolicy, for audit and replay

    @classmethod
    def of(cls, policy: TenantPolicy, ts: datetime, action: str, actor: str = "system", reason: str = "") -> Self:
        """The history record of ``policy`` as it stands after ``action``."""
        body = policy.model_dump_json()
        return cls(
            id=stable_id("limits", policy.tenant_id, ts, action, body),
            tenant_id=policy.tenant_id,
            ts=ts,
            actor=actor,
            action=action,
            reason=reason,
            enabled=policy.enabled,
            shadow=policy.shadow,
            per_minute=policy.per_minute,
            per_hour=policy.per_hour,
            per_day=policy.per_day,
            whitelist_size=len(policy.whitelist),
            blacklist_size=len(policy.blacklist),
            policy_json=body,
        )


class Rollup(Record):
    """Requests of one tenant in one minute: a *part* (one requests partition's share) or the whole.

    Requests are keyed ``tenant:ip``, so a tenant-minute's requests are spread over the
    partitions of ``requests``. Each partition's rate limiter closes its share on its own
    watermark and publishes it as a part (``part`` = that partition, ``parts`` = 1) on the
    internal ``rollup-parts`` topic, inside a :class:`RollupParts` envelope. The combiner
    (:mod:`agents.ratelimit.combine`) adds the parts of a tenant-minute and publishes ONE
    complete rollup (``parts`` = how many partitions saw the tenant that minute, ``part`` = 0)
    on ``rollups`` once every partition's watermark has passed the minute. A part that
    arrives after that is published on its own with ``late`` set (``part`` = its partition):
    visible, never added to the closed minute. Every field adds up across parts
    (``distinct_ips`` too: an IP lives in one partition), and ``latency_hist`` (log buckets 5 %
    apart, see :mod:`agents.ratelimit.rollup`) merges into exact-to-5 % percentiles.
    """

    id: str
    tenant_id: TenantId
    minute: Timestamp  # start of the minute
    part: Annotated[int, Field(ge=0, le=65_535)] = 0  # the requests partition of a part or late row; 0 if complete
    parts: Annotated[int, Field(ge=1, le=65_536)] = 1  # requests partitions whose parts were added up
    late: bool = False  # a part that arrived after its minute closed (kept apart, counted)
    requests: Count
    errors: Count  # status ≥ 500
    client_errors: Count  # 400..499
    blocked: Count  # requests whose decision was not "allowed" (shadow included)
    distinct_ips: Count
    latency_sum_ms: Annotated[float, Field(ge=0)]
    latency_count: Count
    latency_max_ms: Annotated[float, Field(ge=0)]
    latency_p50_ms: Annotated[float, Field(ge=0)]  # histogram estimate, within 5 %
    latency_p95_ms: Annotated[float, Field(ge=0)]
    latency_hist: dict[Annotated[int, Field(ge=0, le=65_535)], Count] = Field(default_factory=dict, max_length=2048)

    @classmethod
    def create(cls, **fields: Any) -> Rollup:
        """Fill the id from (tenant, minute, part), or (tenant, minute, part, "late") for a late row."""
        late = ("late",) if fields.get("late") else ()
        return cls(id=stable_id("rollup", fields["tenant_id"], fields["minute"], fields.get("part", 0), *late),
                   **fields)


class RollupParts(Record):
    """What one requests partition's rate limiter tells one partition of ``rollup-parts``.

    The parts it closed for that partition's tenants, then its watermark progress: every
    minute before ``watermark`` (epoch seconds, a minute boundary) is closed at the source, so
    no more parts of it will come from ``source``. ``idle``: the source had nothing left to
    read, flushed every open minute, and is not waited for until it sends again (see
    :mod:`agents.ratelimit.combine` for the rule). Not a sink record: it never reaches ClickHouse.
    """

    source: Annotated[int, Field(ge=0, le=65_535)]
    watermark: float | None = None  # None: no progress since the previous envelope
    idle: bool = False
    # With `idle`: the offset of the last record of its requests partition the source had read
    # (it is idle only while the partition still ends there). None: not given (older senders).
    offset: Annotated[int, Field(ge=-1)] | None = None
    parts: list[Rollup] = Field(default_factory=list, max_length=10_000)

    @property
    def ts(self) -> datetime:
        """Event time for the runtime's clock: the watermark carried (epoch 0 before the first)."""
        return from_epoch(self.watermark or 0.0)
