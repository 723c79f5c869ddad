"""Shared building blocks for every tenantwatch record: strict base model and field types."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from ipaddress import ip_address
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, WithJsonSchema

__all__ = [
    "EARLIEST",
    "LATEST",
    "EventId",
    "IpAddress",
    "Record",
    "ShortText",
    "TenantId",
    "Timestamp",
    "canonical_ip",
    "check_header_safe",
]

# Events outside this range are almost always unit mistakes (ms vs s) or garbage.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _utc_in_range(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (e.g. 2026-01-01T00:00:00Z)")
    value = value.astimezone(UTC)
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"timestamp {value.isoformat()} outside {EARLIEST.year}..{LATEST.year}")
    return value


def check_header_safe(value: str) -> str:
    """Reject CR/LF and other control characters: these values may end up in mail headers."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("control characters (CR, LF, NUL, ...) are not allowed")
    return value


@lru_cache(maxsize=1 << 16)
def canonical_ip(value: str) -> str:
    """The canonical text of an IPv4/IPv6 address; cached because request streams repeat IPs."""
    if len(value) > 45:
        raise ValueError("not an IP address")
    return str(ip_address(value))


Timestamp = Annotated[datetime, AfterValidator(_utc_in_range)]
TenantId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=96, pattern=r"^[A-Za-z0-9_.:@-]+$")]
# Kept as canonical text (IPv6 compressed, lower-case): a stable key for state and storage.
IpAddress = Annotated[
    str, AfterValidator(canonical_ip), WithJsonSchema({"type": "string", "format": "ipvanyaddress"})
]
ShortText = Annotated[str, StringConstraints(max_length=256), AfterValidator(check_header_safe)]


class Record(BaseModel):
    """Strict, immutable base: unknown fields are errors, never silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=4096)

