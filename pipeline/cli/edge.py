"""`tenantwatch edge …`: enforce decisions at the edge (the `tenantwatch_edge` client package).

    tenantwatch edge serve [--listen 127.0.0.1:8081] [--tenant-key tenant] [--address-key remote_address]
    tenantwatch edge check --tenant acme --ip 203.0.113.9

`serve` runs Envoy's global rate-limit service (gRPC `ShouldRateLimit`) over the decisions
cache: a Go program (edge/rls/), built with `go build` on first use into the cache dir, that
takes this process over; `check` catches up with the decisions topic and prints one verdict
as JSON. Exit status: 0 ok, 2 bad usage (or the edge package or Go is missing, or the address
cannot be listened on), 3 Kafka unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from pipeline.cli._common import Exit, ip_address, tenant_id
from pipeline.settings import Settings

__all__ = ["add_commands"]

EXIT_USAGE, EXIT_UNREACHABLE = Exit.USAGE, Exit.UNREACHABLE


def _listen(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return text


def _edge(settings: Settings, wait_s: float, command: str) -> Any:
    """A started Edge caught up with the decisions topic, or None (after saying why)."""
    try:
        from tenantwatch_edge import Edge
    except ImportError:
        print(f"tenantwatch edge {command}: the tenantwatch-edge package is not installed "
              "(pip install -e './edge[grpc]')", file=sys.stderr)
        return None
    import logging

    from pipeline.adapters.kafka_config import client_kwargs

    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # an unreachable broker is said once, below
    edge = Edge(settings.broker, settings.topic_prefix, options=client_kwargs(settings, "kafka-python"))
    if not edge.wait_ready(wait_s):
        edge.close()
        print(f"tenantwatch edge {command}: Kafka at {settings.broker} did not answer within {wait_s:.0f}s "
              f"(or {settings.topic_prefix}.decisions does not exist: run `tenantwatch topics`)", file=sys.stderr)
        return False
    return edge


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.adapters import rls_service

    try:
        exe = rls_service.binary(settings.cache_dir)
        argv, env = rls_service.command(settings, exe, listen=args.listen, tenant_key=args.tenant_key,
                                        address_key=args.address_key, wait_s=args.wait)
    except (rls_service.RlsBuildError, ValueError) as exc:
        print(f"tenantwatch edge serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)  # noqa: S606  # the service takes this process over: signals, exit status
    return 0  # not reached


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from tenantwatch_edge.client_ip import canonical_ip
    from tenantwatch_edge.headers import headers, status

    ip = canonical_ip(args.ip)
    if ip is None:
        print(f"tenantwatch edge check: {args.ip!r} is not an IP address", file=sys.stderr)
        return EXIT_USAGE
    edge = _edge(settings, args.wait, "check")
    if not edge:
        return EXIT_USAGE if edge is None else EXIT_UNREACHABLE
    try:
        v = edge.check(args.tenant, ip)
        print(json.dumps({"tenant": args.tenant, "ip": ip, "state": v.name, "reason": v.reason,
                          "shadow": v.shadow, "status": status(v) or 200, "headers": dict(headers(v))}))
    finally:
        edge.close()
    return 0


def add_commands(sub: Any) -> None:
    """Add the `edge` subcommands."""
    p = sub.add_parser("edge", help="enforce rate-limit decisions at the edge (Envoy rate-limit service, checks)")
    edge_sub = p.add_subparsers(dest="edge_command", required=True)
    s = edge_sub.add_parser("serve", help="Envoy's global rate-limit service (gRPC ShouldRateLimit) over the cache",
                            description="Envoy's global rate-limit service over the decisions cache: a Go program "
                                        "(edge/rls/), built with `go build` into the cache dir on first use.")
    s.add_argument("--listen", type=_listen, default="127.0.0.1:8081", help="HOST:PORT to serve gRPC on")
    s.add_argument("--tenant-key", default="tenant", help="descriptor entry key holding the tenant id")
    s.add_argument("--address-key", default="remote_address", help="descriptor entry key holding the client IP")
    s.add_argument("--wait", type=float, default=30.0, help="seconds to wait for Kafka before giving up (exit 3)")
    s.set_defaults(func=_serve)
    c = edge_sub.add_parser("check", help="print the edge's verdict for one tenant and client IP")
    c.add_argument("--tenant", required=True, type=tenant_id, help="the tenant whose decision to show")
    c.add_argument("--ip", required=True, type=ip_address, help="the client IP address to look up")
    c.add_argument("--wait", type=float, default=30.0, help="seconds to wait for Kafka before giving up (exit 3)")
    c.set_defaults(func=_check)
