"""Admin actions on the limiter: validated, applied, answered with records or a clear rejection.

Signatures and replay are checked upstream; this module only interprets ``action`` and
its flat ``params``. Actions and their params:

- ``ip.ban`` ``ip`` [``duration_s``] · ``ip.unban`` ``ip``
- ``ip.whitelist`` / ``ip.blacklist`` / ``ip.unlist`` ``cidr`` (an IP or CIDR range, v4/v6)
- ``limits.set`` any of ``per_minute``, ``per_hour``, ``per_day`` (int ≥ 0, or null = off),
  ``violation_threshold``, ``violation_period_s``, ``ban_base_s``, ``ban_max_s``, ``ban_forget_s``
- ``tenant.enable`` / ``tenant.disable`` · ``tenant.shadow`` [``on``: bool, default true]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agents.ratelimit.core import Batch, RateLimiter
from schemas._base import canonical_ip
from schemas.commands import Action, ParamValue
from schemas.ratelimit import LimitConfig, TenantPolicy, canonical_network, from_epoch

__all__ = ["Applied", "Rejected", "apply_action"]

_LIMIT_PARAMS = frozenset({
    "per_minute", "per_hour", "per_day", "violation_threshold", "violation_period_s",
    "ban_base_s", "ban_max_s", "ban_forget_s",
})


@dataclass(frozen=True, slots=True)
class Applied:
    """The action took effect; publish ``limits`` (config history) and ``batch`` records."""

    summary: str
    limits: LimitConfig | None = None
    batch: Batch = field(default_factory=Batch)


@dataclass(frozen=True, slots=True)
class Rejected:
    """The action was refused; ``reason`` is for the audit log and the operator."""

    reason: str


def _only(params: Mapping[str, ParamValue], allowed: set[str] | frozenset[str]) -> str | None:
    extra = sorted(set(params) - set(allowed))
    return f"unknown params: {', '.join(extra)} (allowed: {', '.join(sorted(allowed)) or 'none'})" if extra else None


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}" for e in exc.errors())


def apply_action(  # noqa: PLR0917  # mirrors AdminCommand's fields, in its order
    limiter: RateLimiter,
    tenant: str,
    action: Action | str,
    params: Mapping[str, ParamValue],
    now: float,
    actor: str = "system",
    reason: str = "",
) -> Applied | Rejected:
    """Apply one admin action for ``tenant`` at event time ``now``."""
    try:
        act = Action(action)
    except ValueError:
        return Rejected(f"unknown action {action!r}")
    policy = limiter.policy(tenant) or TenantPolicy(tenant_id=tenant)
    if act in (Action.IP_BAN, Action.IP_UNBAN):
        return _ban(limiter, policy, act, params, now)
    update = _policy_update(policy, act, params)
    if isinstance(update, Rejected):
        return update
    try:
        new = TenantPolicy.model_validate({**policy.model_dump(), **update})
    except ValidationError as exc:
        return Rejected(_errors(exc))
    limiter.set_policy(new)
    record = LimitConfig.of(new, from_epoch(now), act.value, actor=actor, reason=reason)
    return Applied(f"{act.value} applied", limits=record)


def _ban(
    limiter: RateLimiter, policy: TenantPolicy, act: Action, params: Mapping[str, ParamValue], now: float
) -> Applied | Rejected:
    tenant = policy.tenant_id
    allowed = {"ip", "duration_s"} if act is Action.IP_BAN else {"ip"}
    if (bad := _only(params, allowed)) is not None:
        return Rejected(bad)
    try:
        ip = canonical_ip(str(params.get("ip", "")))
    except ValueError:
        return Rejected(f"{params.get('ip')!r} is not an IP address")
    if act is Action.IP_UNBAN:
        batch = limiter.unban(tenant, ip, now)
        return Applied(f"unbanned {ip}" if batch.bans else f"{ip} was not banned", batch=batch)
    duration = params.get("duration_s")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int | float) or not 0 < duration <= 365 * 86400
    ):
        return Rejected(f"duration_s must be a number of seconds in (0, 1 year], got {duration!r}")
    if limiter.policy(tenant) is None:
        limiter.set_policy(policy)
    batch = limiter.ban(tenant, ip, now, None if duration is None else float(duration))
    return Applied(f"banned {ip}", batch=batch)


def _policy_update(  # noqa: PLR0911  # one early return per action reads best
    policy: TenantPolicy, act: Action, params: Mapping[str, ParamValue]
) -> dict[str, Any] | Rejected:
    if act in (Action.IP_WHITELIST, Action.IP_BLACKLIST, Action.IP_UNLIST):
        return _list_update(policy, act, params)
    if act is Action.LIMITS_SET:
        if not params:
            return Rejected("limits.set needs at least one of: " + ", ".join(sorted(_LIMIT_PARAMS)))
        bad = _only(params, _LIMIT_PARAMS)
        return Rejected(bad) if bad else dict(params)
    if act in (Action.TENANT_ENABLE, Action.TENANT_DISABLE):
        bad = _only(params, set())
        return Rejected(bad) if bad else {"enabled": act is Action.TENANT_ENABLE}
    if act is Action.TENANT_SHADOW:
        if (bad := _only(params, {"on"})) is not None:
            return Rejected(bad)
        on = params.get("on", True)
        return {"shadow": on} if isinstance(on, bool) else Rejected(f"on must be true or false, got {on!r}")
    return Rejected(f"{act.value} is not a rate-limit action")


def _list_update(policy: TenantPolicy, act: Action, params: Mapping[str, ParamValue]) -> dict[str, Any] | Rejected:
    if (bad := _only(params, {"cidr"})) is not None:
        return Rejected(bad)
    try:
        net = canonical_network(str(params.get("cidr", "")))
    except ValueError as exc:
        return Rejected(str(exc))
    white = tuple(n for n in policy.whitelist if n != net)
    black = tuple(n for n in policy.blacklist if n != net)
    if act is Action.IP_UNLIST and (white, black) == (policy.whitelist, policy.blacklist):
        return Rejected(f"{net} is on neither list")
    if act is Action.IP_WHITELIST:
        white += (net,)
    elif act is Action.IP_BLACKLIST:
        black += (net,)
    return {"whitelist": white, "blacklist": black}
