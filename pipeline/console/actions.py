"""Owner actions from a console form: checked and turned into the commands to sign (pure).

A form names an action and its fields; `plan` answers with what will be signed (one command,
or one per partition for the trial expiry run) and a sentence the owner confirms, or with a
one-line reason why not. Signing, sending and waiting are the web layer's (pipeline.admin).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline import durations
from schemas.commands import Action, ParamValue

__all__ = ["ACTIONS", "ActionPlan", "PlanError", "plan"]

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_STEPS = ("welcome", "7day", "1day", "expired")

# What an owner may do from the console (rule edits stay with the CLI: they take a whole rule).
ACTIONS: dict[str, str] = {
    Action.IP_BAN: "ban an IP", Action.IP_UNBAN: "unban an IP", Action.IP_WHITELIST: "whitelist an IP or range",
    Action.IP_BLACKLIST: "blacklist an IP or range", Action.IP_UNLIST: "take an IP or range off the lists",
    Action.LIMITS_SET: "set limits", Action.TENANT_ENABLE: "enable rate limiting",
    Action.TENANT_DISABLE: "disable rate limiting", Action.TENANT_SHADOW: "set shadow mode",
    Action.ANOMALY_ACK: "acknowledge an anomaly", Action.ANOMALY_RESOLVE: "resolve an anomaly",
    Action.ANOMALY_FALSE_POSITIVE: "mark an anomaly a false positive", Action.TRIALS_RESEND: "resend a trial mail",
    Action.TRIALS_RUN_EXPIRY: "run the trial expiry job",
}


class PlanError(ValueError):
    """The form does not make a valid command; the message says which field and why."""


@dataclass(frozen=True)
class ActionPlan:
    action: Action
    commands: tuple[tuple[str, dict[str, ParamValue]], ...]  # (tenant or routing key, params)
    summary: str
    reason: str


def duration_s(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``24h``, ``7d`` or ``2w``."""
    try:
        return durations.seconds(text)
    except ValueError as exc:
        raise PlanError(str(exc)) from None


def _field(form: Mapping[str, str], name: str) -> str:
    return (form.get(name) or "").strip()


def _tenant(form: Mapping[str, str]) -> str:
    tenant = _field(form, "tenant")
    if not _TENANT.fullmatch(tenant):
        raise PlanError("tenant: letters, digits and _ . - (up to 64), starting with a letter or digit")
    return tenant


def _ip(form: Mapping[str, str]) -> str:
    try:
        return str(ipaddress.ip_address(_field(form, "ip")))
    except ValueError:
        raise PlanError(f"ip: {_field(form, 'ip')!r} is not an IP address") from None


def _cidr(form: Mapping[str, str]) -> str:
    text = _field(form, "cidr") or _field(form, "ip")
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise PlanError(f"cidr: {text!r} is not an IP address or range") from None


def _limit(form: Mapping[str, str], name: str) -> tuple[bool, int | None]:
    """(given, value): blank leaves the window as it is; 'off' turns it off."""
    text = _field(form, name).lower()
    if not text:
        return False, None
    if text in {"off", "none"}:
        return True, None
    if not text.isdigit() or len(text) > 12:
        raise PlanError(f"{name}: a whole number of requests, or 'off'")
    return True, int(text)


def _ban(form: Mapping[str, str], tenant: str, action: Action) -> tuple[dict[str, ParamValue], str]:
    params: dict[str, ParamValue] = {"ip": _ip(form)}
    if action is Action.IP_UNBAN:
        return params, f"Unban {params['ip']} on tenant {tenant}"
    text = _field(form, "duration")
    if text:
        params["duration_s"] = duration_s(text)
    how_long = f" for {text}" if text else " (escalating by its ban history)"
    return params, f"Ban {params['ip']} on tenant {tenant}{how_long}"


_LIST_VERBS = {Action.IP_WHITELIST: "Whitelist", Action.IP_BLACKLIST: "Blacklist", Action.IP_UNLIST: "Unlist"}


def _lists(form: Mapping[str, str], tenant: str, action: Action) -> tuple[dict[str, ParamValue], str]:
    cidr = _cidr(form)
    return {"cidr": cidr}, f"{_LIST_VERBS[action]} {cidr} on tenant {tenant}"


def _limits(form: Mapping[str, str], tenant: str, action: Action) -> tuple[dict[str, ParamValue], str]:
    params: dict[str, ParamValue] = {}
    for name in ("per_minute", "per_hour", "per_day"):
        given, value = _limit(form, name)
        if given:
            params[name] = value
    if not params:
        raise PlanError("limits: give at least one of per minute, per hour, per day")
    shown = ", ".join(f"{k.replace('_', ' ')} {'off' if v is None else v}" for k, v in params.items())
    return params, f"Set the limits of tenant {tenant}: {shown}"


def _tenant_mode(form: Mapping[str, str], tenant: str, action: Action) -> tuple[dict[str, ParamValue], str]:
    if action is Action.TENANT_SHADOW:
        on = _field(form, "on") not in {"0", "off", "false"}
        return {"on": on}, f"{'Put' if on else 'Take'} tenant {tenant} {'into' if on else 'out of'} shadow mode"
    return {}, f"{'Enable' if action is Action.TENANT_ENABLE else 'Disable'} rate limiting of tenant {tenant}"


_ANOMALY_VERBS = {Action.ANOMALY_ACK: "Acknowledge", Action.ANOMALY_RESOLVE: "Resolve",
                  Action.ANOMALY_FALSE_POSITIVE: "Mark as a false positive"}


def _anomaly(form: Mapping[str, str], tenant: str, action: Action) -> tuple[dict[str, ParamValue], str]:
    anomaly_id = _field(form, "anomaly_id")
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", anomaly_id):
        raise PlanError("anomaly_id: not an anomaly id")
    params: dict[str, ParamValue] = {"anomaly_id": anomaly_id}
    metric = _field(form, "metric")
    if metric:
        if not re.fullmatch(r"[a-z_]{1,64}", metric):
            raise PlanError("metric: not a metric name")
        params["metric"] = metric
    return params, f"{_ANOMALY_VERBS[action]}: anomaly {anomaly_id} of tenant {tenant}"


def _resend(form: Mapping[str, str], tenant: str, action: Action) -> tuple[dict[str, ParamValue], str]:
    step = _field(form, "step")
    if step not in _STEPS:
        raise PlanError(f"step: one of {', '.join(_STEPS)}")
    return {"step": step}, f"Resend the {step} mail of tenant {tenant}'s trial"


_PER_TENANT = {
    Action.IP_BAN: _ban, Action.IP_UNBAN: _ban, **dict.fromkeys(_LIST_VERBS, _lists), Action.LIMITS_SET: _limits,
    Action.TENANT_ENABLE: _tenant_mode, Action.TENANT_DISABLE: _tenant_mode, Action.TENANT_SHADOW: _tenant_mode,
    **dict.fromkeys(_ANOMALY_VERBS, _anomaly), Action.TRIALS_RESEND: _resend,
}


def plan(form: Mapping[str, str], partitions_keys: Mapping[int, str] | None = None) -> ActionPlan:
    """The commands `form` asks for; `partitions_keys` routes the per-partition expiry run."""
    try:
        action = Action(_field(form, "action"))
    except ValueError:
        raise PlanError("unknown action") from None
    if action not in ACTIONS:
        raise PlanError(f"{action.value} is not available in the console")
    reason = _field(form, "reason")[:256]  # the command's reason is ShortText
    if action is Action.TRIALS_RUN_EXPIRY:
        at = _at(_field(form, "at"))
        if not partitions_keys:
            raise PlanError("no partitions to run the expiry on")
        commands = tuple((key, _expiry_params(at, p)) for p, key in sorted(partitions_keys.items()))
        return ActionPlan(action, commands, f"Run the trial expiry job at {at:%Y-%m-%d %H:%M:%S} UTC "
                                            f"on all {len(commands)} partitions", reason)
    tenant = _tenant(form)
    params, summary = _PER_TENANT[action](form, tenant, action)
    return ActionPlan(action, ((tenant, params),), summary, reason)


def _expiry_params(at: datetime, partition: int) -> dict[str, ParamValue]:
    return {"at": at.isoformat(), "partition": partition}


def _at(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PlanError(f"at: {text!r} is not an ISO 8601 time like 2026-03-20T00:00:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
