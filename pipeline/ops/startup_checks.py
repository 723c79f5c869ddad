"""Production-safety checks every tenantwatch process runs before it starts (pure decisions).

The signing key authenticates every admin command: a key anyone can read (the development
key, a placeholder from an example file, anything shorter than 32 bytes) lets anyone who can
produce to the broker ban, unban and reconfigure tenants. A process with such a key warns at
the default log level; with a broker that is not on loopback (a shared or production broker)
it refuses to start unless `TW_ALLOW_DEV_KEY=1` says so explicitly.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pipeline.settings import DEV_SIGNING_KEY, Settings

__all__ = ["MIN_KEY_BYTES", "PLACEHOLDER_KEYS", "StartupVerdict", "broker_is_loopback", "console_bind_verdict",
           "signing_key_problem", "startup_verdict"]

MIN_KEY_BYTES = 32
# Keys that ship in files anyone can read: ours, and the usual example-file values.
PLACEHOLDER_KEYS = frozenset({
    DEV_SIGNING_KEY, "change-me-before-production", "change-me", "changeme", "change_me", "changethis",
    "secret", "password", "dev", "development", "test", "example", "placeholder", "tenantwatch",
})
_PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "replace-me", "replaceme", "example", "placeholder")


def signing_key_problem(key: str) -> str | None:
    """Why `key` must not sign production commands, or None when it may."""
    lowered = key.strip().lower()
    if key == DEV_SIGNING_KEY:
        return "the development signing key is in use"
    if lowered in PLACEHOLDER_KEYS or any(word in lowered for word in _PLACEHOLDER_WORDS):
        return "the signing key is a known placeholder"
    if len(key.encode()) < MIN_KEY_BYTES:
        return f"the signing key is shorter than {MIN_KEY_BYTES} bytes"
    return None


def _host(address: str) -> str:
    address = address.strip()
    if "://" in address:
        address = address.split("://", 1)[1]
    if address.startswith("["):  # [::1]:9092
        return address[1:].split("]", 1)[0]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: it may resolve anywhere
        return False


def broker_is_loopback(broker: str) -> bool:
    """Whether every bootstrap address of `broker` ("host:port[,host:port…]") is on this machine."""
    hosts = [_host(a) for a in broker.split(",") if a.strip()]
    return bool(hosts) and all(_is_loopback(h) for h in hosts)


@dataclass(frozen=True, slots=True)
class StartupVerdict:
    """What a process does about its settings: `warning` to log, and whether it must `refuse`."""

    warning: str | None
    refuse: bool


def startup_verdict(settings: Settings) -> StartupVerdict:
    problem = signing_key_problem(settings.signing_key.get_secret_value())
    if problem is None:
        return StartupVerdict(None, refuse=False)
    if broker_is_loopback(settings.broker):
        return StartupVerdict(f"{problem}: fine for the local stack only; set TW_SIGNING_KEY to a random secret "
                              f"of at least {MIN_KEY_BYTES} bytes before the broker leaves this machine", refuse=False)
    if settings.allow_dev_key:
        return StartupVerdict(f"{problem} with broker {settings.broker} (allowed by TW_ALLOW_DEV_KEY=1): anyone "
                              "who can produce to it can sign admin commands", refuse=False)
    return StartupVerdict(f"{problem} and broker {settings.broker} is not loopback: refusing to start. Set "
                          f"TW_SIGNING_KEY to a random secret of at least {MIN_KEY_BYTES} bytes (e.g. "
                          "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`), or TW_ALLOW_DEV_KEY=1 "
                          "to run anyway", refuse=True)


def console_bind_verdict(settings: Settings, host: str) -> StartupVerdict:
    """Whether the console may listen on `host`: it signs commands with the server's key, so off
    loopback (where others can reach it) a key anyone can read is refused, whatever
    TW_ALLOW_DEV_KEY says; on loopback the processes' own check applies."""
    problem = signing_key_problem(settings.signing_key.get_secret_value())
    if problem is None or _is_loopback(host.strip("[]")):
        return StartupVerdict(None, refuse=False)
    return StartupVerdict(f"{problem} and the console would listen on {host}, off loopback: refusing to start. "
                          f"Set TW_SIGNING_KEY to a random secret of at least {MIN_KEY_BYTES} bytes, or listen on "
                          "127.0.0.1", refuse=True)
