"""Kafka security settings → client keyword arguments for kafka-python, aiokafka and Faust (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from pipeline.adapters.kafka_config import client_kwargs
from pipeline.settings import Settings

CTX = object()  # stands for the TLS context the caller builds


def ctx(ca: Path | None) -> Any:
    return (CTX, ca)


def sasl(**kw: Any) -> Settings:
    return Settings(kafka_security_protocol=kw.pop("protocol", "SASL_SSL"), kafka_username="tw",
                    kafka_password="s3cret", **kw)  # noqa: S106 - a test value


def test_plaintext_adds_nothing_but_the_protocol() -> None:
    """The local stack: clients are built as before (Faust gets no credentials at all)."""
    s = Settings()
    assert client_kwargs(s, "kafka-python") == {"security_protocol": "PLAINTEXT"}
    assert client_kwargs(s, "aiokafka", ctx) == {"security_protocol": "PLAINTEXT"}
    assert client_kwargs(s, "faust", ctx) == {}


def test_sasl_ssl_with_scram_for_kafka_python() -> None:
    """kafka-python gets SCRAM credentials and the CA file to verify the brokers."""
    s = sasl(kafka_ca_file=Path("/etc/kafka/ca.pem"))
    assert client_kwargs(s, "kafka-python") == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "tw",
        "sasl_plain_password": "s3cret", "ssl_cafile": "/etc/kafka/ca.pem",
    }


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT", "SSL", "PLAINTEXT"])
def test_faust_credentials_mean_what_aiokafka_gets(protocol: str) -> None:
    """Oracle: Faust's own credentials → aiokafka mapping equals our aiokafka arguments, for every protocol."""
    s = sasl(protocol=protocol, kafka_sasl_mechanism="SCRAM-SHA-256", kafka_ca_file=Path("/ca.pem"))
    faust = client_kwargs(s, "faust", ctx).get("broker_credentials")
    ours = client_kwargs(s, "aiokafka", ctx)
    theirs = dict(credentials_to_aiokafka_auth(faust))
    if theirs.get("ssl_context") is None:
        theirs.pop("ssl_context", None)
    assert theirs == ours
    tls = protocol in ("SSL", "SASL_SSL")
    assert ("ssl_context" in ours) is tls
    if tls:
        assert ours["ssl_context"] == (CTX, Path("/ca.pem"))


@pytest.mark.parametrize("missing", ["kafka_username", "kafka_password"])
def test_sasl_without_credentials_is_a_configuration_error(missing: str) -> None:
    """Would fail if a SASL protocol silently connected without a username or password."""
    fields = {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_username": "tw", "kafka_password": "x"}
    del fields[missing]
    s = Settings(**fields)
    for client in ("kafka-python", "aiokafka", "faust"):
        with pytest.raises(ValueError, match="needs TW_KAFKA_USERNAME and TW_KAFKA_PASSWORD"):
            client_kwargs(s, client, ctx)  # type: ignore[arg-type]


def test_the_environment_reaches_the_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    """TW_KAFKA_* variables are the settings the builder reads (names documented in the README)."""
    for k, v in {"TW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                 "TW_KAFKA_USERNAME": "svc", "TW_KAFKA_PASSWORD": "pw"}.items():
        monkeypatch.setenv(k, v)
    assert client_kwargs(Settings(), "kafka-python") == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "svc",
        "sasl_plain_password": "pw",
    }
