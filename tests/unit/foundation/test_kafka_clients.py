"""Consumers and admin clients that cannot reach a broker leave no IO thread behind.

kafka-python 3 starts the thread before it bootstraps and raises from the constructor when
bootstrapping fails (`pipeline.adapters.kafka_clients`). If a kafka-python release renames
the private attributes the cleanup uses, the leak comes back and these tests fail.
"""

from __future__ import annotations

import socket
import threading

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaError

from pipeline.adapters.kafka_clients import SafeAdminClient, SafeConsumer


def _dead_bootstrap() -> str:
    with socket.socket() as s:  # a port nobody listens on once this closes
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _io_threads(client_id: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == f"kafka-io-{client_id}" and t.is_alive()]


@pytest.mark.parametrize("factory", [SafeConsumer, SafeAdminClient], ids=["consumer", "admin"])
def test_no_io_thread_left_when_no_broker_answers(factory: type) -> None:
    client_id = f"tw-probe-{factory.__name__}"
    with pytest.raises(KafkaError):
        factory(bootstrap_servers=_dead_bootstrap(), client_id=client_id, bootstrap_timeout_ms=500)
    assert _io_threads(client_id) == []


def test_the_plain_consumer_leaks_its_thread_which_is_why_the_wrapper_exists() -> None:
    """The upstream behaviour the wrapper is for; when a release stops leaking, drop the wrapper."""
    client_id = "tw-probe-plain"
    with pytest.raises(KafkaError):
        KafkaConsumer(bootstrap_servers=_dead_bootstrap(), client_id=client_id, bootstrap_timeout_ms=500)
    leaked = [t for t in threading.enumerate() if t.name == f"kafka-io-{client_id}"]
    try:
        assert leaked, "kafka-python no longer leaks the IO thread of a consumer that failed to bootstrap"
    finally:
        for t in leaked:  # stop what this test leaked: the thread runs its selector's loop
            t._target.__self__.stop(timeout_ms=5000)  # type: ignore[attr-defined]
    assert _io_threads(client_id) == []
