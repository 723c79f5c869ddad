"""Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP), pure: `now` is passed in."""

from __future__ import annotations

import base64
import hmac
import secrets
import struct
from urllib.parse import quote, urlencode

__all__ = ["STEP_S", "hotp", "new_secret", "provisioning_uri", "totp", "verify"]

STEP_S = 30
DIGITS = 6


def new_secret() -> str:
    """A random 160-bit secret, base32 without padding (what authenticator apps take)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def hotp(key: bytes, counter: int, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 4226: the `digits`-digit code of `counter` under `key`."""
    mac = hmac.new(key, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    code = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def totp(secret: str, now: float, digits: int = DIGITS) -> str:
    """RFC 6238: the current code of a base32 `secret` at unix time `now`."""
    return hotp(_key(secret), int(now // STEP_S), digits)


def verify(secret: str, code: str, now: float, *, window: int = 1, after_step: int = -1) -> int | None:
    """The time step `code` matches (±`window` steps of clock drift), or None.

    Steps at or before `after_step` (the last one used) never match, so a code that was
    seen once cannot be replayed within its lifetime.
    """
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    key = _key(secret)
    current = int(now // STEP_S)
    for step in range(current - window, current + window + 1):
        if step > after_step and hmac.compare_digest(hotp(key, step), code):
            return step
    return None


def provisioning_uri(secret: str, name: str, issuer: str = "tenantwatch") -> str:
    """The otpauth:// URI authenticator apps import (as text or QR code)."""
    label = quote(f"{issuer}:{name}")
    return f"otpauth://totp/{label}?" + urlencode({"secret": secret, "issuer": issuer, "digits": DIGITS,
                                                   "period": STEP_S})
