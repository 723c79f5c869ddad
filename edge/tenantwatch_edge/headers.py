"""HTTP answer of a verdict: status and headers, after the IETF httpapi rate-limit headers draft.

Header syntax: draft-ietf-httpapi-ratelimit-headers-09 (structured fields, named policies):

    RateLimit-Policy: "minute";q=10;w=60, "hour";q=1000;w=3600    (q: quota, w: window in s)
    RateLimit: "minute";r=0;t=37                                  (r: remaining, t: seconds to reset)

``RateLimit-Policy`` goes on every response of a tenant whose limits the edge knows. A
``RateLimit`` item is sent while the key is refused (remaining 0, ``t`` the event-time
seconds left; ``"ban"`` names a ban, which no quota describes); the edge keeps no per-request
count, so it does not claim a remaining quota it cannot know. Refused requests get
``Retry-After`` (RFC 9110, whole seconds, rounded up) when the end is known. A shadow tenant's
requests are answered normally, with the ``RateLimit`` item they would have had.
"""

from __future__ import annotations

import math

from tenantwatch_edge.decisions import BLOCKED, Verdict

__all__ = ["DRAFT", "body", "headers", "status"]

DRAFT = "draft-ietf-httpapi-ratelimit-headers-09"


def status(v: Verdict) -> int:
    """429 for a throttled or banned key, 403 for a blacklisted one, else 0 (serve the request)."""
    if not v.enforced:
        return 0
    return 403 if v.state == BLOCKED else 429


def headers(v: Verdict) -> list[tuple[str, str]]:
    """The rate-limit headers of a response under ``v`` (lower-case names)."""
    out: list[tuple[str, str]] = []
    if v.policy:
        out.append(("ratelimit-policy", v.policy))
    if v.state != BLOCKED and v.refused:
        item = f'"{v.window or "limit"}";r=0'
        if v.reset_s is not None:
            secs = max(1, math.ceil(v.reset_s))
            item += f";t={secs}"
            if not v.shadow:
                out.append(("retry-after", str(secs)))
        out.append(("ratelimit", item))
    return out


def body(v: Verdict) -> bytes:
    """A short plain-text body for a refused request."""
    if v.state == BLOCKED:
        return b"forbidden\n"
    return b"too many requests\n"
