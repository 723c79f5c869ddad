"""Whether a Kafka broker answers at all, asked before a kafka-python client is built.

kafka-python 3 starts a client's network thread in its constructor; when the bootstrap then
fails (no broker), the constructor raises and the thread stays, retrying and logging for good.
The feed and the sink retry every second or two while the broker is down, so each attempt
would leave one more thread behind: they ask this first and build no client until it says yes.
"""

from __future__ import annotations

import socket

__all__ = ["reachable"]


def reachable(bootstrap: str, timeout: float = 1.0) -> bool:
    """Whether any of the comma-separated `host:port` servers accepts a TCP connection (one short try each)."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False
