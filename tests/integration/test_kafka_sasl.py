"""Every Kafka client of tenantwatch on a real broker that takes SASL/SCRAM-SHA-512 (the compose layout).

A second broker, whose only client listener besides its own loopback PLAINTEXT one is
SASL_PLAINTEXT with SCRAM: the admin helpers, the SDK and the CLI's command sender
(kafka-python), a worker (Faust, and aiokafka in the broadcast reader) and the ClickHouse
writer all talk to it with nothing but TW_KAFKA_* settings, and a wrong password gets nowhere.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.adapters.kafka_admin import end_offsets, ensure_topics
from pipeline.adapters.kafka_config import client_kwargs
from pipeline.runtime.topics import Topic, topic_name
from pipeline.sdk import Publisher
from pipeline.settings import Settings
from schemas.commands import Action
from tests.conftest import WorkerProcess, WriterThread, free_port, wait_for
from tests.integration.ratelimit.conftest import T0, admin, requests

pytestmark = pytest.mark.integration

USER = "tenantwatch"


@pytest.fixture(scope="module")
def scram_broker(session_dir: Path) -> Iterator[tuple[str, str]]:
    """(SASL bootstrap, password) of a broker that authenticates clients with SCRAM-SHA-512."""
    from pipeline.devstack.kafka import KafkaBroker

    password = secrets.token_urlsafe(24)
    sasl_port = free_port()
    broker = KafkaBroker(cache_dir=Settings().cache_dir, work_dir=session_dir / "kafka-sasl",
                         version=Settings().kafka_version, port=free_port(), controller_port=free_port(),
                         heap="512m", sasl_port=sasl_port, scram_users={USER: password})
    broker.start(timeout=120)
    try:
        yield f"127.0.0.1:{sasl_port}", password
    finally:
        broker.stop()


def _settings(bootstrap: str, password: str, session_dir: Path) -> Settings:
    prefix = f"s{uuid.uuid4().hex[:8]}"
    return Settings(broker=bootstrap, topic_prefix=prefix, app_id=f"tw-{prefix}", data_dir=session_dir / prefix,
                    clickhouse_dsn=f"chdb://{session_dir / 'clickhouse'}", partitions=4,
                    kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                    kafka_username=USER, kafka_password=password)


def test_worker_writer_cli_and_sdk_work_over_scram(
    scram_broker: tuple[str, str], session_dir: Path, chdb_client: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Topics created, a command accepted by a worker, requests published, decided and stored: all over SCRAM."""
    from pipeline.adapters.clickhouse.sinks import ClickHouseSink
    from pipeline.adapters.clickhouse.writer import ClickHouseWriter

    bootstrap, password = scram_broker
    settings = _settings(bootstrap, password, session_dir)
    assert ensure_topics(settings), "the admin client created the topics"
    for key, value in {"TW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                       "TW_KAFKA_USERNAME": USER, "TW_KAFKA_PASSWORD": password}.items():
        monkeypatch.setenv(key, value)  # the worker subprocess inherits them
    worker = WorkerProcess(settings, capabilities="ratelimit").start()
    kafka = client_kwargs(settings, "kafka-python")
    writer = ClickHouseWriter(bootstrap=bootstrap, prefix=settings.topic_prefix, sink=ClickHouseSink(chdb_client),
                              group_id=f"{settings.app_id}-writer", flush_s=0.2, kafka_options=kafka)
    tenant = f"sasl-{uuid.uuid4().hex[:6]}"
    try:
        audit = admin(settings, Action.LIMITS_SET, tenant, per_minute=5, per_hour=None, per_day=None)
        assert audit.outcome == "accepted", audit.reason
        with WriterThread(writer), Publisher(bootstrap, prefix=settings.topic_prefix, options=kafka) as pub:
            pub.publish_many(requests(tenant, "203.0.113.9", 8, start=T0))
            pub.flush()

            def decided() -> int:
                return int(chdb_client.query("SELECT count() FROM rl_decisions FINAL WHERE tenant_id = {t:String}",
                                             parameters={"t": tenant}).result_rows[0][0])

            wait_for(decided, timeout=120,
                     what=lambda: f"decisions of {tenant} in ClickHouse\n{worker.output()[-3000:]}")
        stored = chdb_client.query("SELECT count() FROM requests WHERE tenant_id = {t:String}",
                                   parameters={"t": tenant}).result_rows[0][0]
        assert stored == 8, "the writer consumed the requests over SCRAM"
    finally:
        worker.stop()


def test_a_wrong_password_or_no_sasl_gets_nowhere(scram_broker: tuple[str, str], session_dir: Path) -> None:
    """Would fail if the SASL listener served a client that is not authenticated (the right one is served)."""
    from kafka.errors import KafkaError

    bootstrap, password = scram_broker
    good = _settings(bootstrap, password, session_dir)
    ensure_topics(good)
    name = topic_name(good.topic_prefix, Topic.REQUESTS)
    quick = {"request_timeout_ms": 5000}
    assert len(end_offsets(bootstrap, [name], {**client_kwargs(good, "kafka-python"), **quick})) == 4
    wrong = client_kwargs(_settings(bootstrap, "not-the-password", session_dir), "kafka-python")
    for options in (wrong, {"security_protocol": "PLAINTEXT"}):
        with pytest.raises(KafkaError):
            end_offsets(bootstrap, [name], {**options, **quick})
