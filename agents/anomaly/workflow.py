"""Anomaly status machine: pure functions from (anomaly, action) to a transition or a rejection.

```
            ack                 resolve / false_positive
  active ────────▶ acknowledged ────────────────────────▶ resolved | false_positive
     └──────────── resolve / false_positive ────────────▶ (terminal)
```
`actor="system"` resolves automatically once the metric stays in band (see the detector).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from schemas.anomaly import Anomaly, AnomalyStatus, AnomalyStatusChange, status_change_id, to_datetime
from schemas.commands import Action

__all__ = [
    "ACTION_TARGET",
    "ALLOWED",
    "SYSTEM_ACTOR",
    "TERMINAL",
    "Rejected",
    "Transition",
    "apply_action",
    "transition",
]

SYSTEM_ACTOR: Final = "system"
_S = AnomalyStatus
ALLOWED: Final[dict[AnomalyStatus, frozenset[AnomalyStatus]]] = {
    _S.ACTIVE: frozenset({_S.ACKNOWLEDGED, _S.RESOLVED, _S.FALSE_POSITIVE}),
    _S.ACKNOWLEDGED: frozenset({_S.RESOLVED, _S.FALSE_POSITIVE}),
    _S.RESOLVED: frozenset(),
    _S.FALSE_POSITIVE: frozenset(),
}
TERMINAL: Final = frozenset({_S.RESOLVED, _S.FALSE_POSITIVE})
ACTION_TARGET: Final[dict[Action, AnomalyStatus]] = {
    Action.ANOMALY_ACK: _S.ACKNOWLEDGED,
    Action.ANOMALY_RESOLVE: _S.RESOLVED,
    Action.ANOMALY_FALSE_POSITIVE: _S.FALSE_POSITIVE,
}


@dataclass(frozen=True, slots=True)
class Transition:
    """An accepted change: the anomaly with its new status and the record of the change."""

    anomaly: Anomaly
    change: AnomalyStatusChange


@dataclass(frozen=True, slots=True)
class Rejected:
    """A refused command, with the reason to put in the audit log."""

    reason: str


def transition(
    anomaly: Anomaly, to_status: AnomalyStatus, *, ts: float, actor: str, reason: str = ""
) -> Transition | Rejected:
    """Move `anomaly` to `to_status` if the machine allows it."""
    if to_status not in ALLOWED[anomaly.status]:
        return Rejected(f"illegal transition {anomaly.status.value} → {to_status.value}")
    change = AnomalyStatusChange(
        id=status_change_id(anomaly.id, to_status.value, ts),
        anomaly_id=anomaly.id,
        tenant=anomaly.tenant,
        metric=anomaly.metric,
        ts=to_datetime(ts),
        from_status=anomaly.status,
        to_status=to_status,
        actor=actor,
        reason=reason[:256],
    )
    return Transition(anomaly.model_copy(update={"status": to_status}), change)


def apply_action(anomaly: Anomaly, action: Action, *, ts: float, actor: str, reason: str = "") -> Transition | Rejected:
    """Apply an admin command's action (`anomaly.ack`, `.resolve`, `.false_positive`)."""
    target = ACTION_TARGET.get(action)
    if target is None:
        return Rejected(f"{action.value} is not an anomaly action")
    if actor == SYSTEM_ACTOR:
        return Rejected("the system actor is reserved for automatic transitions")
    return transition(anomaly, target, ts=ts, actor=actor, reason=reason)
