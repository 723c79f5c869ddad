"""Anomaly detection core: metric derivation, rolling seasonal baselines, rules, severity, episodes,
workflow, alerts, NAB. The Faust wiring is `agents.anomaly.agent` (imported only by workers)."""

from agents.anomaly.alerts import alert_for, should_alert
from agents.anomaly.baseline import Estimate, RollingStats, SeasonalBaseline
from agents.anomaly.detector import Step, StreamDetector
from agents.anomaly.metrics import TenantMetrics
from agents.anomaly.multivariate import CORROBORATE_AT, TenantHST, combine
from agents.anomaly.rules import DEFAULT_RULES, RuleBook, default_rule
from agents.anomaly.severity import assess
from agents.anomaly.workflow import Rejected, Transition, apply_action, transition

__all__ = [
    "CORROBORATE_AT",
    "DEFAULT_RULES",
    "Estimate",
    "Rejected",
    "RollingStats",
    "RuleBook",
    "SeasonalBaseline",
    "Step",
    "StreamDetector",
    "TenantHST",
    "TenantMetrics",
    "Transition",
    "alert_for",
    "apply_action",
    "assess",
    "combine",
    "default_rule",
    "should_alert",
    "transition",
]
