"""A tenant's policy compiled for the hot path: limits as a tuple, allow/deny lists as prefix sets.

Lookup cost does not grow with list length: networks are grouped by prefix length into
sets of integer prefixes, so an address is checked once per distinct prefix length in
use (at most 33 for IPv4, 129 for IPv6), and answers are cached per address text.
"""

from __future__ import annotations

import math
from ipaddress import ip_address
from typing import Final

from schemas.ratelimit import TenantPolicy

__all__ = ["BLACK", "NONE", "WHITE", "CompiledPolicy", "PrefixSet", "ip_value"]

NONE: Final = 0
WHITE: Final = 1
BLACK: Final = 2
_CACHE_MAX = 1 << 16


class PrefixSet:
    """Membership of an address in a set of CIDR networks (v4 and v6), by prefix length.

    >>> s = PrefixSet(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"])
    >>> s.contains("10.1.2.3"), s.contains("11.0.0.1"), s.contains("2001:db8::1"), s.contains("192.0.2.7")
    (True, False, True, True)
    """

    __slots__ = ("_v4", "_v6")

    def __init__(self, networks: tuple[str, ...] | list[str]) -> None:
        from ipaddress import ip_network

        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for text in networks:
            net = ip_network(text, strict=False)
            bits = 32 if net.version == 4 else 128
            table = v4 if net.version == 4 else v6
            table.setdefault(net.prefixlen, set()).add(int(net.network_address) >> (bits - net.prefixlen))
        # longest prefixes first is irrelevant for a yes/no answer; sorted for determinism
        self._v4 = tuple((32 - p, frozenset(s)) for p, s in sorted(v4.items()))
        self._v6 = tuple((128 - p, frozenset(s)) for p, s in sorted(v6.items()))

    def __bool__(self) -> bool:
        return bool(self._v4 or self._v6)

    def contains(self, ip: str) -> bool:
        """Whether ``ip`` (text) falls in any of the networks."""
        return self.contains_value(*ip_value(ip))

    def contains_value(self, version: int, value: int) -> bool:
        """Whether the address ``value`` (an int, as from :func:`ip_value`) falls in any of the networks."""
        return any(value >> shift in prefixes for shift, prefixes in (self._v4 if version == 4 else self._v6))


def ip_value(ip: str) -> tuple[int, int]:
    """(version, integer value) of an address; canonical dotted IPv4 skips :mod:`ipaddress` (5× faster).

    >>> ip_value("10.0.0.1"), ip_value("2001:db8::1")[0]
    ((4, 167772161), 6)
    """
    if ":" not in ip:
        parts = ip.split(".")
        if len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts):  # four octets
            a, b, c, d = map(int, parts)
            if a | b | c | d <= 255:  # an octet
                return 4, (a << 24) | (b << 16) | (c << 8) | d
    addr = ip_address(ip)
    return addr.version, int(addr)


class CompiledPolicy:
    """What the limiter reads per request; rebuilt whenever the tenant's policy changes."""

    __slots__ = (
        "_black",
        "_cache",
        "_white",
        "caps",
        "enabled",
        "has_lists",
        "limits",
        "policy",
        "shadow",
    )

    def __init__(self, policy: TenantPolicy) -> None:
        self.policy = policy
        self.enabled = policy.enabled
        self.shadow = policy.shadow
        # per window (minute, hour, day); None = not limited
        self.limits: tuple[int | None, int | None, int | None] = (
            policy.per_minute,
            policy.per_hour,
            policy.per_day,
        )
        # the same with "not limited" as +inf: the hot path compares without a None test
        self.caps: tuple[float, float, float] = (
            math.inf if policy.per_minute is None else policy.per_minute,
            math.inf if policy.per_hour is None else policy.per_hour,
            math.inf if policy.per_day is None else policy.per_day,
        )
        self._white = PrefixSet(policy.whitelist)
        self._black = PrefixSet(policy.blacklist)
        self.has_lists = bool(self._white) or bool(self._black)
        self._cache: dict[str, int] = {}

    def __reduce__(self) -> tuple[type[CompiledPolicy], tuple[TenantPolicy]]:
        return (CompiledPolicy, (self.policy,))

    def listed(self, ip: str) -> int:
        """``BLACK`` if blacklisted (wins over whitelist), else ``WHITE`` if whitelisted, else ``NONE``."""
        hit = self._cache.get(ip)
        if hit is not None:
            return hit
        version, value = ip_value(ip)
        verdict = (BLACK if self._black.contains_value(version, value)
                   else WHITE if self._white.contains_value(version, value) else NONE)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()  # crude but bounded; lookups are cheap to redo
        self._cache[ip] = verdict
        return verdict
