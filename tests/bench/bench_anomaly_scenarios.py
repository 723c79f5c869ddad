"""Anomaly detector on the product's own incidents: `tenantwatch eval scenarios` in full.

Run: `.venv/bin/python tests/bench/bench_anomaly_scenarios.py`. Three generated populations
(1.5, 5 and 20 requests per minute at peak; every incident kind; six clean tenants each),
seeded from 14 days of history, then 10 days scored. Prints each run (every incident with its
delay) and the total: precision, recall on the right metric, detection delay per incident kind,
false alerts per clean tenant-day and the severity mix. The goals: recall 1.00, precision ≥ 0.8, ≤ 0.05 false
alerts per clean tenant-day, volume and error incidents within one window, revenue within two.
"""

from __future__ import annotations

import sys
import time

from pipeline.devstack.anomaly_eval import main

if __name__ == "__main__":
    started = time.perf_counter()
    code = main([])
    print(f"({time.perf_counter() - started:.0f} s, single process)")
    sys.exit(code)
