"""Request events as the pipeline's strict contract wants them (``schemas.events.RequestEvent``).

This package cannot import the pipeline's models, so it builds the JSON itself; the test suite
checks every event built here (hostile inputs included) against ``schemas/`` with the
pipeline's own strict decoder. What cannot be made valid (an unknown HTTP method, a tenant id
that is not one) is not published: ``build`` returns None and the sink counts it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Final

__all__ = ["METHODS", "TENANT_RE", "build", "valid_tenant"]

METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
TENANT_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_PATH = 2048
MAX_LATENCY_MS = 3_600_000.0
MAX_BYTES = 10**12
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def valid_tenant(tenant: str | None) -> bool:
    return tenant is not None and TENANT_RE.fullmatch(tenant) is not None


def build(  # noqa: PLR0917  # the fields of one event, in the order of the contract
    event_id: str, ts: float, tenant: str, ip: str, method: str, path: str, status: int, latency_ms: float, size: int,
) -> bytes | None:
    """The JSON of one request event, or None if it cannot satisfy the contract."""
    if method not in METHODS or not valid_tenant(tenant) or not 100 <= status <= 599:
        return None
    if not path:
        path = "/"
    elif len(path) > MAX_PATH:
        path = path[:MAX_PATH]
    latency = min(max(float(latency_ms), 0.0), MAX_LATENCY_MS)
    return _dumps({
        "kind": "request", "event_id": event_id,
        "ts": datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds"),
        "tenant_id": tenant, "ip": ip, "method": method, "path": path, "status": int(status),
        "latency_ms": round(latency, 3), "bytes": min(max(int(size), 0), MAX_BYTES),
    }).encode()
