"""The one place that names tenantwatch's Kafka topics, their keys and what flows on them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["INPUT_TOPICS", "TOPICS", "WORKER_TOPICS", "Topic", "TopicSpec", "topic_name"]


class Topic(StrEnum):
    """Logical topic names; the physical name is `<prefix>.<value>`."""

    REQUESTS = "requests"
    BILLING = "billing"
    ERRORS = "errors"
    USAGE = "usage"
    COMMANDS = "commands"
    METRICS = "metrics"
    DECISIONS = "decisions"
    VIOLATIONS = "violations"
    BANS = "bans"
    LIMITS = "limits"
    ROLLUPS = "rollups"
    ROLLUP_PARTS = "rollup-parts"
    ANOMALIES = "anomalies"
    ANOMALY_STATUS = "anomaly-status"
    BASELINES = "baselines"
    ANOMALY_RULES = "anomaly-rules"
    RATELIMIT_ORDERS = "ratelimit-orders"
    RATELIMIT_POLICIES = "ratelimit-policies"
    TRIAL_STATE = "trial-state"
    TENANT_COMMANDS = "tenant-commands"
    NOTIFICATIONS = "notifications"
    DELIVERIES = "deliveries"
    AUDIT = "audit"
    DLQ = "dlq"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    topic: Topic
    key: str  # what the record key is, for humans and for the SDK
    doc: str
    compacted: bool = False


TOPICS: dict[Topic, TopicSpec] = {
    s.topic: s
    for s in [
        TopicSpec(Topic.REQUESTS, "tenant:ip", "RequestEvent, one per record or a JSON array batch"),
        TopicSpec(Topic.BILLING, "tenant", "BillingEvent (trials, charges, refunds, cancellations)"),
        TopicSpec(Topic.ERRORS, "tenant", "ErrorEvent"),
        TopicSpec(Topic.USAGE, "tenant", "UsageEvent"),
        TopicSpec(Topic.COMMANDS, "tenant", "signed AdminCommand"),
        TopicSpec(Topic.METRICS, "tenant", "metric points for the anomaly agent"),
        # Compacted: the last decision of every key stays, so an edge rebuilds its cache from it.
        TopicSpec(Topic.DECISIONS, "tenant:ip", "rate-limit decision state changes for gateways (the edge client)",
                  compacted=True),
        TopicSpec(Topic.VIOLATIONS, "tenant:ip", "rate-limit violations"),
        TopicSpec(Topic.BANS, "tenant:ip", "bans started and ended"),
        TopicSpec(Topic.LIMITS, "tenant", "limit configuration history"),
        TopicSpec(Topic.RATELIMIT_ORDERS, "tenant:ip", "internal: manual ban/unban routed to the key's owner"),
        TopicSpec(Topic.RATELIMIT_POLICIES, "tenant", "internal: each tenant's policy in force, read by every worker",
                  compacted=True),
        TopicSpec(Topic.ROLLUPS, "partition of the tenant key",
                  "complete per-minute request rollups (one per tenant-minute; late parts flagged)"),
        TopicSpec(Topic.ANOMALIES, "tenant", "anomaly records (one id per episode, latest wins)"),
        TopicSpec(Topic.ANOMALY_STATUS, "tenant", "anomaly status changes (ack, resolve, false positive)"),
        TopicSpec(Topic.BASELINES, "tenant", "baseline bands per tenant, metric and time, for charts"),
        TopicSpec(Topic.ANOMALY_RULES, "tenant", "anomaly rule history"),
        TopicSpec(Topic.TRIAL_STATE, "tenant", "trial state changes"),
        TopicSpec(Topic.TENANT_COMMANDS, "tenant", "suspend/unsuspend for upstream apps to enforce"),
        TopicSpec(Topic.NOTIFICATIONS, "recipient", "mails and webhooks to deliver"),
        TopicSpec(Topic.DELIVERIES, "notification", "delivery log"),
        TopicSpec(Topic.AUDIT, "tenant", "every admin command, accepted or rejected"),
        TopicSpec(Topic.DLQ, "source topic", "dead letters with their reason"),
    ]
}

# Between workers only: no sink reads them, so no consumer group but the workers' has offsets
# on them. Created with the others (`pipeline.adapters.kafka_admin.ensure_topics`).
WORKER_TOPICS: dict[Topic, TopicSpec] = {
    s.topic: s
    for s in [
        TopicSpec(Topic.ROLLUP_PARTS, "partition of the tenant key",
                  "each requests partition's rollup parts and watermark, to every partition (RollupParts)"),
    ]
}

INPUT_TOPICS = (Topic.REQUESTS, Topic.BILLING, Topic.ERRORS, Topic.USAGE)


def topic_name(prefix: str, topic: Topic) -> str:
    return f"{prefix}.{topic.value}"
