"""Anomaly detection core: rolling seasonal baselines, rules, severity, episodes, workflow, NAB."""

from agents.anomaly.baseline import Estimate, RollingStats, SeasonalBaseline
from agents.anomaly.detector import Step, StreamDetector
from agents.anomaly.multivariate import CORROBORATE_AT, TenantHST, combine
from agents.anomaly.rules import DEFAULT_RULES, RuleBook, default_rule
from agents.anomaly.severity import classify
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
    "Transition",
    "apply_action",
    "classify",
    "combine",
    "default_rule",
    "transition",
]
