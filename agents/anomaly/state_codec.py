"""The table codecs of the anomaly agent's state: versioned, bounded JSON snapshots (no pickle).

A changelog record is decoded by `restore`, which checks every field (type, range, size)
and raises on anything else; `pipeline.table_codecs` then refuses the record (logged,
counted) and the key reads as absent, so a hostile or corrupt record can neither run code
nor stop the worker. The multivariate detector has its own binary codec (`multivariate`).
"""

from __future__ import annotations

from agents.anomaly.alerts import SeriesRing
from agents.anomaly.detector import StreamDetector
from agents.anomaly.metrics import TenantMetrics
from pipeline.table_codecs import TableValue, register_state_codec

__all__ = ["DETECTOR_CODEC", "METRICS_CODEC", "RING_CODEC", "DetectorValue", "MetricsValue", "RingValue",
           "register_codecs"]

DETECTOR_CODEC = "tw-stream-detector"
METRICS_CODEC = "tw-tenant-metrics"
RING_CODEC = "tw-series-ring"
_VERSION = 1


class DetectorValue(TableValue):
    """Value type of the `streams` table: a StreamDetector."""

    class _options:
        serializer = DETECTOR_CODEC


class MetricsValue(TableValue):
    """Value type of the `derive` table: a TenantMetrics."""

    class _options:
        serializer = METRICS_CODEC


class RingValue(TableValue):
    """Value type of the `chart` table: a SeriesRing."""

    class _options:
        serializer = RING_CODEC


def register_codecs() -> None:
    """Register the three codecs with Faust (idempotent)."""
    register_state_codec(DETECTOR_CODEC, _VERSION, StreamDetector.snapshot, StreamDetector.restore, 1 << 20)
    register_state_codec(METRICS_CODEC, _VERSION, TenantMetrics.snapshot, TenantMetrics.restore, 4 << 20)
    register_state_codec(RING_CODEC, _VERSION, SeriesRing.snapshot, SeriesRing.restore, 64 << 10)
