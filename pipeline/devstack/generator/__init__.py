"""Deterministic synthetic traffic in event time: requests, billing, errors, usage, with ground truth."""

from pipeline.devstack.generator.config import (
    PRESETS,
    AbuseBurst,
    ErrorSpike,
    GeneratorConfig,
    RevenueDrop,
    Scenarios,
    TrialCohort,
    UsageSpike,
    history_of,
    preset,
)
from pipeline.devstack.generator.engine import generate, ground_truth, iter_events, iter_records

__all__ = [
    "PRESETS",
    "AbuseBurst",
    "ErrorSpike",
    "GeneratorConfig",
    "RevenueDrop",
    "Scenarios",
    "TrialCohort",
    "UsageSpike",
    "generate",
    "ground_truth",
    "history_of",
    "iter_events",
    "iter_records",
    "preset",
]
