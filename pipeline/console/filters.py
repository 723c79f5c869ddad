"""The filters of a console view, from its query string (pure): tenant, IP, look-back, status."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from pipeline.console.actions import PlanError, duration_s
from pipeline.console.queries import ANOMALY_STATUSES, OPEN_STATUSES, TRIAL_STATUSES

__all__ = ["REFRESH_CHOICES", "SINCE_CHOICES", "Filters", "parse_filters"]

SINCE_CHOICES = ("1h", "6h", "24h", "7d", "30d", "365d")
REFRESH_CHOICES = (0, 10, 30, 60)
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Filters:
    tenant: str = ""
    ip: str = ""
    since: str = ""
    since_s: int | None = None
    status: str = ""
    refresh: int = 30
    problems: tuple[str, ...] = field(default=())

    def query(self, **changes: Any) -> str:
        """This view's query string, with `changes` (for links that keep the other filters)."""
        values = {"tenant": self.tenant, "ip": self.ip, "since": self.since, "status": self.status,
                  "refresh": self.refresh, **changes}
        return urlencode({k: v for k, v in values.items() if v not in ("", None)})

    def anomaly_statuses(self) -> list[str]:
        if self.status in ANOMALY_STATUSES:
            return [self.status]
        return list(ANOMALY_STATUSES) if self.status == "all" else list(OPEN_STATUSES)


def parse_filters(query: Mapping[str, str], default_since: str = "") -> Filters:
    """Filters from a query string; a bad value is dropped with a line in `problems`, never raised."""
    problems: list[str] = []
    tenant = (query.get("tenant") or "").strip()
    if tenant and not _TENANT.fullmatch(tenant):
        problems.append(f"tenant {tenant[:64]!r} ignored: not a tenant id")
        tenant = ""
    ip = (query.get("ip") or "").strip()
    if ip:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            problems.append(f"ip {ip[:64]!r} ignored: not an IP address")
            ip = ""
    since = (query.get("since") or default_since).strip()
    since_s: int | None = None
    if since:
        try:
            since_s = int(duration_s(since))
        except PlanError as exc:
            problems.append(f"since ignored: {exc}")
            since = default_since
            since_s = int(duration_s(since)) if since else None
    status = (query.get("status") or "").strip()
    if status and status not in (*ANOMALY_STATUSES, *TRIAL_STATUSES, "all", "open"):
        problems.append(f"status {status[:32]!r} ignored")
        status = ""
    try:
        refresh = int(query.get("refresh") or 30)
    except ValueError:
        refresh = 30
    if refresh not in REFRESH_CHOICES:
        refresh = 30
    return Filters(tenant, ip, since, since_s, status, refresh, tuple(problems))
