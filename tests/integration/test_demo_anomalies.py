"""`tenantwatch demo --preset tiny` shows true anomalies: its streams seed from the backfilled history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from agents.anomaly.incidents import AFTERMATH, RIGHT_METRICS
from agents.anomaly.metrics import RESOLUTIONS
from pipeline.devstack.generator import ground_truth, preset
from schemas.anomaly import MetricName
from tests.conftest import ROOT, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Run in a child: this process may already hold the session's chDB (one data path per process).
_READ = """
import json, sys
from pipeline.adapters.clickhouse.client import connect
c = connect(sys.argv[1])
rows = c.query("SELECT tenant, metric, toUnixTimestamp(start_ts) FROM anomalies FINAL").result_rows
points = c.query("SELECT count(), countIf(ts < toDateTime64(sys.argv_start, 3, 'UTC')) FROM metric_points FINAL")
print(json.dumps({"anomalies": rows, "points": list(points.result_rows[0])}))
"""


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_the_tiny_demo_catches_its_incidents_from_seeded_baselines(tmp_path: Path) -> None:
    """Two live days after 14 backfilled ones: each of the preset's incidents is an anomaly on its
    right metric (the history is in metric_points, before the preset's start, never scored)."""
    env = dict(os.environ, TW_DATA_DIR=str(tmp_path), TW_BROKER=f"127.0.0.1:{free_port()}",
               TW_KAFKA_CONTROLLER_PORT=str(free_port()), TW_SMTP_PORT=str(free_port()),
               TW_CONSOLE_PORT=str(free_port()))
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "demo", "--preset", "tiny"], cwd=ROOT, env=env,
                          capture_output=True, timeout=900, check=False)
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, out[-3000:] + done.stderr.decode(errors="replace")[-2000:]
    assert "metric points backfilled" in out
    config = preset("tiny").model_copy(update={"seed": 7})  # what the demo plays by default
    start = int(config.start.timestamp())
    read = subprocess.run([sys.executable, "-c", _READ.replace("sys.argv_start", str(start)),
                           f"chdb://{tmp_path / 'demo' / 'clickhouse'}"], cwd=ROOT, capture_output=True,
                          timeout=300, check=True)
    found = json.loads(read.stdout)
    total, before = found["points"]
    assert before > 10_000  # the backfill: 14 days of the six tenants' metrics, before the live days
    assert total > before
    anomalies = [(tenant, MetricName(metric), float(ts)) for tenant, metric, ts in found["anomalies"]]
    incidents = [s for s in ground_truth(config)["scenarios"] if s["kind"] in RIGHT_METRICS]
    assert len(incidents) == 4

    def belongs(tenant: str, metric: MetricName, ts: float, inc: dict[str, str]) -> bool:  # as `incidents` scores
        res = RESOLUTIONS[metric]
        return (tenant == inc["tenant_id"] and metric in RIGHT_METRICS[inc["kind"]]
                and _epoch(inc["start"]) - res <= ts < _epoch(inc["end"]) + AFTERMATH * res)

    for inc in incidents:
        assert any(belongs(*a, inc) for a in anomalies), (inc, anomalies)
