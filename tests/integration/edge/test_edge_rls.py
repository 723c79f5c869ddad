"""`tenantwatch edge serve`: Envoy's ShouldRateLimit asked by a real gRPC client; a restart rebuilds the cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from pipeline.adapters import rls_service
from pipeline.settings import Settings
from schemas.commands import Action
from tests.conftest import ROOT, free_port, wait_for
from tests.integration.ratelimit.conftest import admin, tenant_name

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OK, OVER = rls_pb2.RateLimitResponse.OK, rls_pb2.RateLimitResponse.OVER_LIMIT


def env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "TW_BROKER": settings.broker, "TW_TOPIC_PREFIX": settings.topic_prefix,
            "TW_APP_ID": settings.app_id, "TW_DATA_DIR": str(settings.data_dir)}


@pytest.fixture
def service(stack: Settings) -> Iterator[tuple[subprocess.Popen[bytes], Any, str]]:
    """`tenantwatch edge serve` on a free port, and a gRPC stub talking to it."""
    rls_service.binary(stack.cache_dir)  # built (once) before the clock below starts
    port = free_port()
    log = stack.data_dir / f"edge-serve-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "edge", "serve", "--listen",
                                 f"127.0.0.1:{port}"], cwd=ROOT, env=env(stack), stdout=out, stderr=subprocess.STDOUT)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        wait_for(lambda: "rate-limit service on" in log.read_text() or proc.poll() is not None, timeout=90,
                 what="the rate-limit service")
        assert proc.poll() is None, log.read_text()
        yield proc, rls_pb2_grpc.RateLimitServiceStub(channel), str(log)
    finally:
        channel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def ask(stub: Any, tenant: str, ip: str) -> Any:
    entries = [ratelimit_pb2.RateLimitDescriptor.Entry(key="tenant", value=tenant),
               ratelimit_pb2.RateLimitDescriptor.Entry(key="remote_address", value=ip),
               ratelimit_pb2.RateLimitDescriptor.Entry(key="path", value="/api/items")]
    request = rls_pb2.RateLimitRequest(domain="tenantwatch", descriptors=[ratelimit_pb2.RateLimitDescriptor(
        entries=entries)])
    return stub.ShouldRateLimit(request, timeout=10)


def test_envoy_rls_enforces_and_a_restarted_edge_rebuilds_from_the_topic(stack: Settings, service: Any) -> None:
    """Checks are published and decided; OVER_LIMIT with headers once throttled; a fresh process sees it at once."""
    proc, stub, log = service
    tenant = tenant_name("rls")
    assert admin(stack, Action.LIMITS_SET, tenant, per_minute=5, violation_threshold=1000).outcome == "accepted"
    first = [ask(stub, tenant, "192.0.2.66") for _ in range(5)]  # published as request events; the 5th uses 5 up
    assert [r.overall_code for r in first] == [OK] * 5
    assert len(first[0].statuses) == 1
    over = wait_for(lambda: (r := ask(stub, tenant, "192.0.2.66")).overall_code == OVER and r, timeout=60,
                    what="OVER_LIMIT from the service")
    headers = {h.key: h.value for h in over.response_headers_to_add}
    assert headers["ratelimit"] == f'"minute";r=0;t={headers["retry-after"]}'
    assert headers["ratelimit-policy"].startswith('"minute";q=5;w=60')
    assert [s.code for s in over.statuses] == [OVER]
    assert ask(stub, tenant, "192.0.2.10").overall_code == OK, "another IP is not limited"
    assert ask(stub, tenant, "not-an-ip").overall_code == OK, "unattributable checks pass"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    with open(log) as fh:
        stats = json.loads(fh.read().strip().splitlines()[-1])
    assert stats["service"]["over_limit"] >= 1
    assert stats["service"]["unattributed"] == 1
    # A new edge process: nothing in memory, the compacted decisions topic gives the throttle back.
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "edge", "check", "--tenant", tenant, "--ip",
                           "192.0.2.66"], cwd=ROOT, env=env(stack), capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    verdict = json.loads(done.stdout)
    assert (verdict["state"], verdict["status"]) == ("throttled", 429)
    assert verdict["reason"] in {"exhausted:minute", "limit:minute"}, "used up, or crossed by the refused checks"


def test_edge_cli_exit_codes(stack: Settings) -> None:
    """Bad usage exits 2, an unreachable broker 3, each with one line on stderr and no traceback."""
    bad = subprocess.run([sys.executable, "-m", "pipeline.cli", "edge", "check", "--tenant", "a", "--ip", "x"],
                         cwd=ROOT, env=env(stack), capture_output=True, timeout=60, check=False)
    assert bad.returncode == 2
    assert b"not an IP address" in bad.stderr
    gone = subprocess.run([sys.executable, "-m", "pipeline.cli", "edge", "serve", "--wait", "2"], cwd=ROOT,
                          env={**env(stack), "TW_BROKER": f"127.0.0.1:{free_port()}"}, capture_output=True,
                          timeout=60, check=False)
    assert gone.returncode == 3, gone.stderr
    assert b"did not answer" in gone.stderr
    assert b"Traceback" not in gone.stderr
