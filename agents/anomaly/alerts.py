"""Which anomalies page a human, and the `anomaly_alert` notification that does it (pure).

A notification goes out the first time an episode reaches `high`, and again if it later
reaches `critical`; its id is `stable_id("anomaly-alert", anomaly id, severity)`, so a
redelivered metric point cannot mail twice.
"""

from __future__ import annotations

from typing import Final

from schemas.anomaly import Anomaly, Severity
from schemas.notify import Notification
from schemas.notify import Severity as NoticeSeverity
from schemas.results import stable_id

__all__ = ["ALERT_AT", "alert_for", "describe", "should_alert"]

ALERT_AT: Final = (Severity.HIGH, Severity.CRITICAL)
_NOTICE: Final = {Severity.HIGH: NoticeSeverity.WARNING, Severity.CRITICAL: NoticeSeverity.CRITICAL}


def should_alert(anomaly: Anomaly, before: Severity | None) -> bool:
    """Whether this version of the episode crossed into an alerting severity (`before`: previous)."""
    if anomaly.severity not in ALERT_AT:
        return False
    if before is None or before not in ALERT_AT:
        return True
    return anomaly.severity is Severity.CRITICAL and before is not Severity.CRITICAL


def _num(x: float) -> str:
    return f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"


def describe(a: Anomaly) -> str:
    pct = "" if a.deviation_pct is None else f" ({a.deviation_pct:+.0f} %)"
    side = "above" if a.deviation_sigma > 0 else "below"
    return (
        f"{a.metric.value} of {a.tenant} is {abs(a.deviation_sigma):.1f}σ {side} its baseline{pct} "
        f"over {a.points} point(s) since {a.start_ts.isoformat()}; verdict {a.verdict.value}. "
        f"Anomaly id {a.id}."
    )


def alert_for(anomaly: Anomaly, recipient: str) -> Notification:
    """The `anomaly_alert` mail for a high or critical anomaly."""
    return Notification(
        id=stable_id("anomaly-alert", anomaly.id, anomaly.severity.value),
        kind="anomaly_alert",
        recipient=recipient,
        tenant_id=anomaly.tenant,
        severity=_NOTICE.get(anomaly.severity, NoticeSeverity.WARNING),
        ts=anomaly.detected_ts,
        variables={
            "tenant_id": anomaly.tenant,
            "metric": anomaly.metric.value,
            "value": _num(anomaly.value),
            "baseline": f"{_num(anomaly.expected)} ± {_num(anomaly.sigma)}",
            "severity": anomaly.severity.value,
            "detected_at": anomaly.detected_ts.isoformat(),
            "description": describe(anomaly),
            "anomaly_id": anomaly.id,
        },
    )
