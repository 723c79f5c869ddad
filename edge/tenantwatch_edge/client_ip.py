"""Who is asking: the client IP behind trusted proxies, and the canonical text of an address.

``X-Forwarded-For`` is a list each proxy appends the address it saw to, so only its right end
can be trusted, and only as far as the proxies that wrote it are ours. The client is the
right-most address that is not a trusted proxy, walking left from the peer of the connection;
a peer that is not trusted is the client itself (its header is whatever it chose to send).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

__all__ = ["ClientIp", "canonical_ip"]


@lru_cache(maxsize=1 << 16)
def canonical_ip(value: str) -> str | None:
    """The canonical text of an address (IPv6 compressed, ``::ffff:a.b.c.d`` as ``a.b.c.d``), or None.

    The same form the pipeline keys its decisions by (``schemas._base.canonical_ip``).
    """
    text = value.strip()
    if len(text) > 45:
        return None
    try:
        addr = ip_address(text)
    except ValueError:
        return None
    mapped = getattr(addr, "ipv4_mapped", None)
    return str(mapped if mapped is not None else addr)


class ClientIp:
    """Resolve the client address from the connection's peer and ``X-Forwarded-For``."""

    def __init__(self, trusted_proxies: Iterable[str] = (), max_hops: int = 16) -> None:
        self.trusted: tuple[IPv4Network | IPv6Network, ...] = tuple(ip_network(n, strict=False)
                                                                    for n in trusted_proxies)
        self.max_hops = max_hops
        self._trusted_cache: dict[str, bool] = {}

    def is_trusted(self, ip: str) -> bool:
        hit = self._trusted_cache.get(ip)
        if hit is None:
            addr = ip_address(ip)
            hit = any(addr in net for net in self.trusted)
            if len(self._trusted_cache) < 4096:
                self._trusted_cache[ip] = hit
        return hit

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's canonical address, or None if the peer is not an IP address."""
        ip = canonical_ip(peer) if peer else None
        if ip is None or not self.trusted or not forwarded_for or not self.is_trusted(ip):
            return ip
        hops = forwarded_for.split(",")[-self.max_hops:]
        for raw in reversed(hops):
            hop = canonical_ip(raw)
            if hop is None:  # garbage in the chain: the last address we could trust is the client
                return ip
            ip = hop
            if not self.is_trusted(ip):
                return ip
        return ip
