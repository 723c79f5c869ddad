"""The request events the edge builds satisfy the pipeline's strict contract (schemas/), hostile input included."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.sdk import InvalidEventError, validate_event_json
from schemas.events import RequestEvent
from tenantwatch_edge.client_ip import canonical_ip
from tenantwatch_edge.events import METHODS, build

tenants = st.sampled_from(["acme", "a", "x" * 64, "x" * 65, "", "-bad", "ok.t_1-2", "é", "a b"]) | st.text(max_size=70)
methods = st.sampled_from([*sorted(METHODS), "TRACE", "CONNECT", "get", "PROPFIND", ""])
paths = st.text(max_size=2100) | st.sampled_from(["", "/", "/x" * 1500, "/a\r\nb", "/\x00"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenant=tenants, ip=st.ip_addresses().map(str), method=methods, path=paths,
       status=st.integers(0, 1000), latency=st.floats(-1e9, 1e10, allow_nan=False), size=st.integers(-5, 10**13),
       ts=st.floats(1e9, 4e9))
def test_every_event_built_validates_or_is_not_built(  # noqa: PLR0917  # hypothesis passes the fields by name
    tenant: str, ip: str, method: str, path: str, status: int, latency: float, size: int, ts: float,
) -> None:
    """build() returns None or JSON the workers' strict decoder accepts with the same fields."""
    canon = canonical_ip(ip)
    assert canon is not None
    raw = build("n0de.1", ts, tenant, canon, method, path, status, latency, size)
    if raw is None:
        assert method not in METHODS or not 100 <= status <= 599 or not tenant or len(tenant) > 64 \
            or tenant[0] in "-_." or not tenant.isascii() or any(not (c.isalnum() or c in "_.-") for c in tenant)
        return
    try:
        event = validate_event_json(raw)
    except InvalidEventError as exc:
        raise AssertionError(f"edge built an event the pipeline refuses: {exc}\n{raw[:300]!r}") from None
    assert isinstance(event, RequestEvent)
    assert (event.tenant_id, event.ip, event.method.value, event.status) == (tenant, canon, method, status)
    assert event.path == ((path or "/")[:2048])
    assert abs(event.ts.timestamp() - ts) < 1e-5
