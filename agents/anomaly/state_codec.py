"""The table codecs of the anomaly agent's state: versioned, bounded JSON snapshots (no pickle).

A changelog record is decoded by `restore`, which checks every field (type, range, size)
and raises on anything else; `pipeline.runtime.table_codecs` then refuses the record (logged,
counted) and the key reads as absent, so a hostile or corrupt record can neither run code
nor stop the worker. The multivariate detector has its own binary codec (`multivariate`).
"""

from __future__ import annotations

from agents.anomaly.alerts import SeriesRing
from agents.anomaly.detector import StreamDetector
from agents.anomaly.metrics import TenantMetrics
from pipeline.runtime.table_codecs import register_state_codec, value_type

__all__ = ["DETECTOR_CODEC", "METRICS_CODEC", "RING_CODEC", "DetectorValue", "MetricsValue", "RingValue",
           "register_codecs"]

DETECTOR_CODEC = "tw-stream-detector"
METRICS_CODEC = "tw-tenant-metrics"
RING_CODEC = "tw-series-ring"
_VERSION = 1


DetectorValue = value_type(DETECTOR_CODEC, "Value type of the `streams` table: a StreamDetector.")
MetricsValue = value_type(METRICS_CODEC, "Value type of the `derive` table: a TenantMetrics.")
RingValue = value_type(RING_CODEC, "Value type of the `chart` table: a SeriesRing.")


def register_codecs() -> None:
    """Register the three codecs with Faust (idempotent)."""
    register_state_codec(DETECTOR_CODEC, _VERSION, StreamDetector.snapshot, StreamDetector.restore, 1 << 20)
    register_state_codec(METRICS_CODEC, _VERSION, TenantMetrics.snapshot, TenantMetrics.restore, 4 << 20)
    register_state_codec(RING_CODEC, _VERSION, SeriesRing.snapshot, SeriesRing.restore, 64 << 10)
