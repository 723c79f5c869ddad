"""Runtime settings, from the environment (`TW_` prefix) with local-stack defaults."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_OWNER_EMAIL", "DEV_SIGNING_KEY", "Settings"]

# Only for the local stack and tests; `tenantwatch` warns when it is in use.
DEV_SIGNING_KEY = "tenantwatch-dev-key-change-me"
DEFAULT_OWNER_EMAIL = "owner@tenantwatch.local"


class Settings(BaseSettings):
    """Every knob of a tenantwatch process. `TW_BROKER=...`, `TW_CLICKHOUSE_DSN=...`, and so on."""

    model_config = SettingsConfigDict(env_prefix="TW_", extra="ignore", frozen=True)

    # Where local state goes: chDB data, SMTP sink mail folder, Kafka log dirs, Faust tables.
    data_dir: Path = Path(".tenantwatch")
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "tenantwatch")

    # Kafka
    broker: str = "127.0.0.1:19092"
    topic_prefix: str = "tw"
    partitions: int = Field(default=4, ge=1, le=1024)
    replication: int = Field(default=1, ge=1, le=5)
    session_timeout_s: float = Field(default=30.0, gt=0)
    kafka_version: str = "4.1.1"
    kafka_controller_port: int = 19093
    app_id: str = "tenantwatch"
    producer_linger_ms: int = Field(default=10, ge=0)
    # How often the worker commits the offsets of durable batches (Faust's default: 2.8 s). It
    # bounds what a restart re-reads, and how long finished work waits to count as done.
    commit_interval_s: float = Field(default=1.0, gt=0, le=60)
    # Write-behind state (the rate limiter's keys) is written at checkpoints this far apart (or
    # when the inputs go quiet), so a key changed by many batches is written once. A restart
    # re-reads up to this much more input.
    checkpoint_s: float = Field(default=5.0, gt=0, le=300)
    # How long the broker may hold a worker's fetch that finds no data (Faust: 1500 ms). Busy
    # inputs are left out of a fetch while their records wait to be taken, so a long hold
    # stalls them (see pipeline.faust_compat.short_fetch_wait).
    fetch_wait_ms: int = Field(default=25, ge=1, le=1500)

    # ClickHouse: chDB (embedded, default) or a server URL such as http://user:pass@host:8123/db
    clickhouse_dsn: str | None = None
    writer_batch_rows: int = Field(default=20_000, ge=1)
    writer_flush_s: float = Field(default=1.0, gt=0)
    writer_buffer_max_rows: int = Field(default=200_000, ge=1)
    writer_retry_max_s: float = Field(default=30.0, gt=0)

    # SMTP
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    mail_from: str = "tenantwatch <alerts@tenantwatch.local>"
    # Who hears about anomalies and bans (mail, and the lane of their webhooks). `TW_OWNER_EMAIL`;
    # `TW_ANOMALY_ALERT_TO`, its earlier name, still works.
    owner_email: str = Field(default=DEFAULT_OWNER_EMAIL, validation_alias=AliasChoices(
        "owner_email", "TW_OWNER_EMAIL", "TW_ANOMALY_ALERT_TO"))

    # Worker batching: up to `take_max_records` Kafka records (each may pack up to
    # `max_events_per_record` events) or `take_within_s` seconds (requests; the other inputs
    # `take_within_other_s`), whichever comes first. Kept
    # modest so one batch never holds the event loop (and the group heartbeat) for long. The
    # wait starts after the previous batch, so it adds to the delay of a quiet stream (at
    # 10k events/s: p50 55 ms with 0.05 s, 29 ms with 0.01 s, 14 ms with 0.005 s); a busy
    # stream fills batches before it ends, so throughput does not depend on it.
    take_max_records: int = Field(default=100, ge=1, le=10_000)
    take_within_s: float = Field(default=0.005, gt=0, le=10)
    # The same wait for every other input (billing, errors, usage, rollups, metrics,
    # notifications): none has a decision waiting on it, and a batching loop wakes every
    # `within` even when idle (seven inputs at 5 ms: ~1400 wake-ups a second).
    take_within_other_s: float = Field(default=0.05, gt=0, le=10)

    # Dead letters keep at most this many bytes of the original message.
    dlq_payload_max_bytes: int = Field(default=4096, ge=0)
    max_events_per_record: int = Field(default=10_000, ge=1)

    # Admin command signing (HMAC-SHA256) and replay window.
    signing_key: SecretStr = SecretStr(DEV_SIGNING_KEY)
    command_max_skew_s: float = Field(default=300.0, gt=0)

    # Operations: a Prometheus /metrics port per process (off when unset) and JSON logs.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    log_json: bool = False

    # Event time: how far behind the newest event the watermark trails (allowed lateness),
    # and an optional idle tick that advances time from the wall clock when nothing arrives.
    allowed_lateness_s: float = Field(default=5.0, ge=0)
    # A requests partition with nothing left to read (caught up with its end offset) and no new
    # record for this long (wall time) is idle: its rate limiter closes its open rollup minutes
    # and tells the rollup combiners not to wait for it (agents.ratelimit.combine).
    source_idle_s: float = Field(default=10.0, gt=0, le=3600)
    idle_tick_s: float | None = None

    @cached_property
    def dsn(self) -> str:
        """The ClickHouse DSN in force: the configured one, or chDB under the data dir."""
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def kafka_dir(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def broker_port(self) -> int:
        return int(self.broker.rsplit(":", 1)[1])

    @property
    def signing_key_bytes(self) -> bytes:
        return self.signing_key.get_secret_value().encode()
