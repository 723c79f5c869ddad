"""Runtime settings, from the environment (`TW_` prefix) with local-stack defaults."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.runtime.event_time import LeadRule

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
    # State is checkpointed this often (or when the inputs go quiet), so a key changed by many
    # batches in between is written once (docs/STATE.md). A checkpoint holds new batches while
    # it snapshots what changed (~8k rate-limit keys at 10k events/s in 5 s took 45-90 ms); at
    # 1 s the rate-limit bench's decision p99 fell from ~240-330 ms to ~120-190 ms, with the
    # same ingest rate.
    checkpoint_s: float = Field(default=1.0, gt=0, le=300)
    # How long the broker may hold a worker's fetch that finds no data (Faust: 1500 ms). Busy
    # inputs are left out of a fetch while their records wait to be taken, so a long hold
    # stalls them (see pipeline.runtime.faust_adapter.short_fetch_wait).
    fetch_wait_ms: int = Field(default=25, ge=1, le=1500)

    # Kafka security (see pipeline.adapters.kafka_config): PLAINTEXT for the local stack on loopback;
    # SASL_SSL (or SASL_PLAINTEXT inside a private network) with SCRAM wherever it leaves it.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    kafka_ca_file: Path | None = None  # CA bundle of the brokers' TLS certificates (default: the system's)

    # ClickHouse: chDB (embedded, default) or a server URL such as http://user:pass@host:8123/db
    clickhouse_dsn: str | None = None
    writer_batch_rows: int = Field(default=20_000, ge=1)
    writer_flush_s: float = Field(default=1.0, gt=0)
    writer_buffer_max_rows: int = Field(default=200_000, ge=1)
    writer_retry_max_s: float = Field(default=30.0, gt=0)
    # How the writer owns partitions: `manual` (assigns itself every partition: the one writer
    # a chDB path admits; no group rebalance can strand it), `group` (a consumer-group member:
    # several writers on a ClickHouse server), or `auto` (manual for chDB, group otherwise).
    writer_assignment: Literal["auto", "manual", "group"] = "auto"
    # Days of metric history a new anomaly stream learns from ClickHouse before it scores
    # (ClickHouse server only; 0: warm up live). `TW_ANOMALY_SEED_DAYS`.
    anomaly_seed_days: float = Field(default=14.0, ge=0, le=30)

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

    # Dead letters keep at most this many bytes of the original message (bounded so that one
    # dead letter, base64 and all, fits in an output record).
    dlq_payload_max_bytes: int = Field(default=4096, ge=0, le=512 << 10)
    max_events_per_record: int = Field(default=10_000, ge=1)
    # JSON-array records a worker writes (dead letters, batched results) are split to stay
    # under this: Kafka's default message.max.bytes is 1 MiB, the worker's producer takes 8 MiB.
    output_record_max_bytes: int = Field(default=1_000_000, ge=64 << 10, le=8 << 20)

    # Admin command signing (HMAC-SHA256) and replay window.
    signing_key: SecretStr = SecretStr(DEV_SIGNING_KEY)
    # Run with the development (or a placeholder, or a short) key although the broker is not on
    # loopback: processes refuse to otherwise (pipeline.ops.startup_checks).
    allow_dev_key: bool = False
    command_max_skew_s: float = Field(default=300.0, gt=0)

    # The owner console (`tenantwatch console serve`): where it listens (loopback unless told;
    # off loopback it refuses the development key), how long a sign-in lasts (idle, and at
    # most), how long an action waits for the worker's verdict, and TLS (cookies then Secure).
    console_host: str = "127.0.0.1"
    console_port: int = Field(default=8765, ge=1, le=65535)
    console_session_idle_s: float = Field(default=1800.0, gt=0)
    console_session_max_s: float = Field(default=12 * 3600.0, gt=0)
    console_wait_s: float = Field(default=30.0, gt=0, le=600)
    console_tls_cert: Path | None = None
    console_tls_key: Path | None = None

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
    # An upstream event more than this ahead of its partition's newest accepted event is
    # dead-lettered ("too far ahead") instead of moving time for every tenant there, unless
    # `event_time_quorum` tenants agree on the jump (see pipeline.runtime.event_time). 0 turns it off.
    max_event_lead_s: float = Field(default=21_600.0, ge=0)
    event_time_quorum: int = Field(default=2, ge=1, le=64)
    # Live deployments only (replays must leave it unset): an event more than this ahead of the
    # worker's wall clock is dead-lettered whatever vouches for it.
    max_clock_skew_s: float | None = Field(default=None, gt=0)

    @property
    def lead_rule(self) -> LeadRule:
        """The event-time admission rule these settings put in force."""
        return LeadRule(max_lead_s=self.max_event_lead_s or None, quorum=self.event_time_quorum,
                        max_clock_skew_s=self.max_clock_skew_s)

    @cached_property
    def dsn(self) -> str:
        """The ClickHouse DSN in force: the configured one, or chDB under the data dir."""
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def writer_assignment_in_force(self) -> Literal["manual", "group"]:
        if self.writer_assignment != "auto":
            return self.writer_assignment
        return "manual" if self.dsn.startswith("chdb://") else "group"

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
