"""Settings → the keyword arguments of each Kafka client tenantwatch uses (one home for Kafka security).

`client_kwargs(settings, client)` gives what to add to a client's constructor:

- ``"kafka-python"``: `KafkaProducer` / `KafkaConsumer` / `KafkaAdminClient` (CLI, SDK, writer,
  admin helpers): `security_protocol`, `sasl_*`, `ssl_cafile`;
- ``"aiokafka"``: `AIOKafkaConsumer` (the broadcast reader): `security_protocol`, `sasl_*`, `ssl_context`;
- ``"faust"``: `faust.App` (the worker and everything it produces): `broker_credentials`.

PLAINTEXT gives only `security_protocol` (Faust: nothing), so the local stack's clients are
what they always were. SASL needs a username and a password; TLS verifies the brokers against
`kafka_ca_file` (or the system's CAs). Pure apart from building the TLS context, which the
caller may pass in (`ssl_context`).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pipeline.settings import Settings

__all__ = ["Client", "client_kwargs"]

Client = Literal["kafka-python", "aiokafka", "faust"]


def _default_context(ca_file: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def client_kwargs(settings: Settings, client: Client,
                  ssl_context: Callable[[Path | None], Any] = _default_context) -> dict[str, Any]:
    """Constructor keyword arguments for `client` (raises ValueError on incomplete SASL settings)."""
    protocol = settings.kafka_security_protocol
    sasl = protocol.startswith("SASL_")
    tls = protocol in ("SSL", "SASL_SSL")
    user = settings.kafka_username
    password = settings.kafka_password.get_secret_value() if settings.kafka_password is not None else None
    if sasl and not (user and password):
        raise ValueError(f"TW_KAFKA_SECURITY_PROTOCOL={protocol} needs TW_KAFKA_USERNAME and TW_KAFKA_PASSWORD")
    mechanism = settings.kafka_sasl_mechanism
    if client == "kafka-python":
        out: dict[str, Any] = {"security_protocol": protocol}
        if sasl:
            out.update(sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password)
        if tls and settings.kafka_ca_file is not None:
            out["ssl_cafile"] = str(settings.kafka_ca_file)
        return out
    context = ssl_context(settings.kafka_ca_file) if tls else None
    if client == "aiokafka":
        out = {"security_protocol": protocol}
        if sasl:
            out.update(sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password)
        if context is not None:
            out["ssl_context"] = context
        return out
    if client == "faust":
        from faust.auth import SASLCredentials, SSLCredentials

        if sasl:  # with a context Faust speaks SASL_SSL, without SASL_PLAINTEXT
            return {"broker_credentials": SASLCredentials(username=user, password=password, ssl_context=context,
                                                          mechanism=mechanism)}
        if tls:
            return {"broker_credentials": SSLCredentials(context)}
        return {}
    raise ValueError(f"unknown Kafka client {client!r}")


def missing_codecs() -> list[str]:
    """Compression codecs a producer may use that this process could not read (empty: all readable).

    Kafka clients compress record batches on request (gzip, snappy, lz4, zstd). aiokafka (the
    worker) decodes all but gzip with cramjam; kafka-python (the writer, the admin tools) with
    python-snappy, lz4 and zstandard. A batch in a codec without its library crashed the worker's
    fetcher, so processes check at start-up instead.
    """
    from aiokafka import codec as aio
    from kafka import codec as kp

    kafka_python_lib = {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}
    missing = []
    for name in ("snappy", "lz4", "zstd"):
        if not getattr(aio, f"has_{name}")():
            missing.append(f"{name} (aiokafka: cramjam)")
        if not getattr(kp, f"has_{name}")():
            missing.append(f"{name} (kafka-python: {kafka_python_lib[name]})")
    return missing
