"""Chaos: the Kafka broker stopped for 60 s mid-stream and started again. The worker and the
ClickHouse writer wait it out (or are restarted by their supervisor, as in production) and
owners see what a run without the outage gives: the same decisions, violations, bans and
rollups, and every request stored once."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.devstack.kafka import KafkaBroker
from pipeline.settings import Settings
from tests.chaos.test_chaos_ratelimit import EVENTS, T0, TENANTS, outcome, published_per_minute, run
from tests.conftest import free_port
from tests.integration.ratelimit.conftest import make_settings, rows, ticks

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

OUTAGE_S = 60.0


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker of this module's own, so stopping it leaves the session's broker alone."""
    broker = KafkaBroker(cache_dir=Settings().cache_dir, work_dir=tmp_path_factory.mktemp("kafka-outage"),
                         version=Settings().kafka_version, port=free_port(), controller_port=free_port(),
                         partitions=4)
    broker.start(timeout=120)
    try:
        yield broker
    finally:
        broker.stop()


def test_a_broker_stopped_for_a_minute_mid_stream_changes_no_outcome(own_broker: KafkaBroker, session_dir: Path,
                                                                       chdb_client: Any) -> None:
    """Stop the broker (SIGTERM) for 60 s at ~40 % of the input, start it again on the same log dir:
    decisions, violations, bans and rollups equal a run without the outage; rollups equal the
    published count; every request is stored once."""
    lines: list[str] = []
    tag = uuid.uuid4().hex[:6]
    calm_tenants = [f"bk{i}-calm-{tag}" for i in range(TENANTS)]
    down_tenants = [f"bk{i}-down-{tag}" for i in range(TENANTS)]
    stopped: list[float] = []

    def outage(publishing: threading.Lock) -> None:
        with publishing:  # upstream waits for the broker, as a producer with retries would
            own_broker.stop()
            started = time.monotonic()
            time.sleep(OUTAGE_S)  # the fault itself lasts this long; nothing is being waited for
            stopped.append(time.monotonic() - started)
            own_broker.start(timeout=120)

    assert run(make_settings(own_broker.bootstrap, session_dir), chdb_client, calm_tenants, (), lines.append) == 0
    run(make_settings(own_broker.bootstrap, session_dir), chdb_client, down_tenants, (), lines.append,
        outage=(0.4, outage))
    assert len(stopped) == 1
    assert stopped[0] >= OUTAGE_S
    calm, down = outcome(chdb_client, calm_tenants), outcome(chdb_client, down_tenants)
    stored = Counter({(t, m): n for (t, m, n, _e, _b) in down["rollups"]})
    assert stored == published_per_minute(down_tenants)
    assert calm["bans"], "the traffic must make bans, or the comparison proves little"
    for name in ("decisions", "violations", "bans", "rollups"):
        assert down[name] == calm[name], f"{name} differ after the outage: {lines}"
    (n,) = rows(chdb_client, "SELECT count() FROM requests FINAL WHERE tenant_id IN {ts:Array(String)}",
                ts=down_tenants)[0]
    assert n == EVENTS + len(ticks(down_tenants[0], T0))
