"""Notifications: templates, safe messages, storm control, charts, webhooks, ban notices and the notifier."""

from agents.notify.chart import anomaly_chart, notification_chart
from agents.notify.message import InvalidMessage, build_message, chart_cid, check_address, message_id
from agents.notify.notifier import ChartSource, Notifier
from agents.notify.outbound import alert_notifications, ban_notifications
from agents.notify.retention import stale_deliveries
from agents.notify.storm import StormDecision, StormGuard, StormPolicy
from agents.notify.templates import (
    TEMPLATE_VARIABLES,
    MissingVariables,
    RenderedMail,
    TemplateRenderer,
    UnknownTemplate,
    UnsafeSubject,
)
from agents.notify.webhook import WebhookSender, slack_payload

__all__ = [
    "TEMPLATE_VARIABLES",
    "ChartSource",
    "InvalidMessage",
    "MissingVariables",
    "Notifier",
    "RenderedMail",
    "StormDecision",
    "StormGuard",
    "StormPolicy",
    "TemplateRenderer",
    "UnknownTemplate",
    "UnsafeSubject",
    "WebhookSender",
    "alert_notifications",
    "anomaly_chart",
    "ban_notifications",
    "build_message",
    "chart_cid",
    "check_address",
    "message_id",
    "notification_chart",
    "slack_payload",
    "stale_deliveries",
]
