"""kafka-python consumers and admin clients that leave no thread behind when no broker answers.

kafka-python 3 starts a client's IO thread (``kafka-io-<client id>``) in the constructors of
``KafkaConsumer`` and ``KafkaAdminClient`` *before* it bootstraps; when bootstrapping fails
the constructor raises, nobody holds the object, and its thread runs on for the life of the
process. A ClickHouse writer retrying against a broker that is down gained one such thread
per attempt. The classes here stop that thread (and close the half-built client) when their
constructor fails, then re-raise.

This is the one module of the pipeline that builds those two clients; it reads two private
attributes of kafka-python (``_net``, the client's network selector, and ``_client``), which
``tests/unit/foundation/test_kafka_clients.py`` checks on the installed version.
"""

from __future__ import annotations

import contextlib
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer

__all__ = ["SafeAdminClient", "SafeConsumer"]


def _discard(client: Any) -> None:
    """Close what a failed constructor left running: the client's sockets, then its IO thread."""
    inner = client.__dict__.get("_client")
    if inner is not None:
        with contextlib.suppress(Exception):
            inner.close()
    net = client.__dict__.get("_net")
    if net is not None:
        with contextlib.suppress(Exception):
            net.stop(timeout_ms=5000)


class SafeConsumer(KafkaConsumer):  # type: ignore[misc]  # kafka-python is untyped
    """`kafka.KafkaConsumer`, without a leaked IO thread when it cannot bootstrap."""

    def __init__(self, *topics: str, **configs: Any) -> None:
        try:
            super().__init__(*topics, **configs)
        except BaseException:
            _discard(self)
            raise


class SafeAdminClient(KafkaAdminClient):  # type: ignore[misc]  # kafka-python is untyped
    """`kafka.admin.KafkaAdminClient`, without a leaked IO thread when it cannot bootstrap."""

    def __init__(self, **configs: Any) -> None:
        try:
            super().__init__(**configs)
        except BaseException:
            _discard(self)
            raise
