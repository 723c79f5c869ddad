"""The shipped Envoy example is a valid Envoy bootstrap, wired to what `tenantwatch edge serve` reads."""

from __future__ import annotations

from pathlib import Path

import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2  # registers the filter's Any type
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import json_format

ANY_TYPES = (router_pb2, http_protocol_options_pb2)  # imported so the example's "@type"s resolve
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "envoy" / "envoy.yaml"


def test_example_parses_as_envoy_bootstrap_and_sends_the_descriptors_the_service_reads() -> None:
    """Every field exists in Envoy's v3 API (unknown ones fail the parse); tenant and address reach the service."""
    boot = json_format.ParseDict(yaml.safe_load(EXAMPLE.read_text()), bootstrap_pb2.Bootstrap())
    hcm = hcm_pb2.HttpConnectionManager()
    assert boot.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.Unpack(hcm)
    rl = rate_limit_pb2.RateLimit()
    assert hcm.http_filters[0].typed_config.Unpack(rl)
    assert rl.rate_limit_service.grpc_service.envoy_grpc.cluster_name == "tenantwatch_rls"
    assert not rl.failure_mode_deny, "fail open, like the middleware"
    actions = hcm.route_config.virtual_hosts[0].routes[0].route.rate_limits[0].actions
    keys = [a.request_headers.descriptor_key or "remote_address" for a in actions]
    assert keys == ["tenant", "remote_address", "method", "path"]  # the service's defaults
    rls = next(c for c in boot.static_resources.clusters if c.name == "tenantwatch_rls")
    assert rls.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value == 8081
