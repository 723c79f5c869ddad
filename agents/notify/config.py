"""Settings of the notification agent, from `TW_NOTIFY_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.notify.storm import StormPolicy
from pipeline.adapters.smtp import RetryPolicy

__all__ = ["NotifyConfig", "WebhookTarget"]


class WebhookTarget(BaseSettings):
    """`TW_NOTIFY_WEBHOOK_URL` alone: what producers of notifications (rate limiter, anomaly
    agent) read to decide whether to add webhook-channel ones. The secret stays with the notifier."""

    model_config = SettingsConfigDict(env_prefix="TW_NOTIFY_", extra="ignore", frozen=True)

    webhook_url: str | None = None  # notifications with channel=webhook go here (HMAC-signed)

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url)


class NotifyConfig(WebhookTarget):
    """Templates, storm control, webhook and retry policy; e.g. `TW_NOTIFY_STORM_LIMIT=10`."""

    model_config = SettingsConfigDict(env_prefix="TW_NOTIFY_", extra="ignore", frozen=True)

    template_dir: Path | None = None  # overrides the built-in templates file by file
    storm_limit: int = Field(default=5, ge=1)  # alert mails per recipient per window
    storm_window_s: float = Field(default=3600.0, gt=0)
    storm_kinds: frozenset[str] = frozenset({"anomaly_alert", "ban_notice"})
    webhook_secret: SecretStr = SecretStr("")
    # In-line retries of one send (short: the batch waits for them) ...
    smtp_attempts: int = Field(default=3, ge=1)
    smtp_retry_base_s: float = Field(default=0.25, gt=0)
    smtp_retry_cap_s: float = Field(default=2.0, gt=0)
    # ... then the notification waits in the outbox table, retried on a timer with back-off.
    outbox_retry_base_s: float = Field(default=1.0, gt=0)
    outbox_retry_cap_s: float = Field(default=60.0, gt=0)
    outbox_max_age_s: float = Field(default=3 * 86_400.0, gt=0)  # then it is given up as failed
    tick_s: float = Field(default=0.5, gt=0)
    # The delivery log forgets a notification this long (wall clock) after its delivery
    # finished. Keep it above the notifications topic's retention (7 days on the local
    # stack): only a redelivery from Kafka can bring an id back, and none is older than that.
    deliveries_max_age_s: float = Field(default=30 * 86_400.0, gt=0)
    prune_interval_s: float = Field(default=3600.0, gt=0)

    @model_validator(mode="after")
    def _webhooks_are_signed(self) -> Self:
        if self.webhook_url and not self.webhook_secret.get_secret_value():
            raise ValueError("TW_NOTIFY_WEBHOOK_URL needs TW_NOTIFY_WEBHOOK_SECRET: receivers verify the HMAC")
        return self

    def storm(self) -> StormPolicy:
        return StormPolicy(limit=self.storm_limit, window=self.storm_window_s, kinds=self.storm_kinds)

    def smtp_retry(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.smtp_attempts, base_s=self.smtp_retry_base_s,
                           cap_s=self.smtp_retry_cap_s)

    def outbox_delay(self, attempts: int) -> float:
        """Wall seconds before the next outbox retry after `attempts` failed rounds."""
        return min(self.outbox_retry_cap_s, self.outbox_retry_base_s * 2.0 ** max(0, attempts - 1))
