"""One definition of the cache: the Go rate-limit service answers exactly as the Python edge does.

The same records (the pipeline's own Decision and TenantPolicy models, tombstones, hostile
bytes) go to the Python DecisionCache and to the Go service (``-conform``: its cache and
``ShouldRateLimit`` answers without Kafka or gRPC); then the same checks must get the same
verdict (state, reason, limit, window, reset, shadow, policy), the same code and headers, and
the same request events, which the pipeline's strict decoder must accept.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.adapters import rls_service
from pipeline.sdk import validate_event_json
from pipeline.settings import Settings
from schemas.events import RequestEvent
from schemas.ratelimit import Decision, TenantPolicy
from tenantwatch_edge.client_ip import canonical_ip
from tenantwatch_edge.decisions import BLOCKED, DecisionCache
from tenantwatch_edge.events import build
from tenantwatch_edge.headers import headers

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CHECK_TS = 1_780_000_000.123456  # the time -conform stamps its request events with
TENANTS = ["acme", "beta", "bad tenant", ""]
IPS = ["192.0.2.1", "192.0.2.2", "2001:db8::7", "::ffff:192.0.2.1", " 192.0.2.2 ", "2001:0db8:0:0:0:0:0:7",
       "192.0.2.256", "01.2.3.4", "fe80::1%eth0", "not-an-ip", "", "::", "::1.2.3.4", "2001:db8:0:1:0:0:0:1"]


@pytest.fixture(scope="module")
def rls_binary() -> Path:
    return rls_service.binary(Settings().cache_dir)


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _decision(draw: Any) -> tuple[bytes | None, bytes | None]:
    tenant, ip = draw(st.sampled_from(TENANTS[:2])), draw(st.sampled_from(IPS[:3]))
    key = f"{tenant}:{ip}".encode()
    kind = draw(st.sampled_from(["model"] * 6 + ["tombstone", "bytes", "json"]))
    if kind == "tombstone":
        return key, None
    if kind == "bytes":
        return key, draw(st.binary(max_size=40))
    if kind == "json":  # a JSON object close to a decision, with a field of the wrong type or shape
        fields: dict[str, Any] = {"tenant_id": tenant, "ip": ip, "state": "throttled", "reason": "limit:minute",
                                  "ts": T0.isoformat(), "reset_ts": (T0 + timedelta(seconds=30)).isoformat()}
        field = draw(st.sampled_from([*sorted(fields), "limit", "remaining", "shadow"]))
        fields[field] = draw(st.sampled_from([None, 5, 5.0, -1, True, "x", "", "a" * 300, [1], "2026-03-02T09:00:00"]))
        return key, json.dumps(fields).encode()
    state = draw(st.sampled_from(["allowed", "throttled", "banned", "blocked"]))
    reason = draw(st.sampled_from(["ok", "reset", "limit:minute", "limit:hour", "limit:day", "exhausted:minute",
                                   "exhausted:day", "ban", "ban-ended", "blacklist", "disabled", "limit:week"]))
    at = draw(st.integers(0, 600)) + draw(st.sampled_from([0.0, 0.25, 0.123456]))
    reset = draw(st.none() | st.integers(-60, 900).map(lambda s: at + s + 0.5))
    d = Decision.create(tenant_id=tenant, ip=ip, state=state, reason=reason,
                        limit=draw(st.none() | st.integers(0, 10**6)), remaining=draw(st.none() | st.integers(0, 2)),
                        reset_ts=None if reset is None else T0 + timedelta(seconds=reset),
                        retry_after_s=None if reset is None else max(0.0, reset - at),
                        shadow=draw(st.booleans()), ts=T0 + timedelta(seconds=at))
    return key, d.model_dump_json().encode()


def _policy(draw: Any) -> tuple[bytes | None, bytes | None]:
    tenant = draw(st.sampled_from(TENANTS[:2]))
    kind = draw(st.sampled_from(["model"] * 4 + ["tombstone", "bytes"]))
    if kind == "tombstone":
        return tenant.encode(), None
    if kind == "bytes":
        return tenant.encode(), draw(st.binary(max_size=30))
    p = TenantPolicy(tenant_id=tenant, per_minute=draw(st.none() | st.integers(0, 1000)),
                     per_hour=draw(st.none() | st.integers(0, 10**5)), per_day=draw(st.none() | st.integers(0, 10**6)),
                     enabled=draw(st.booleans()), shadow=draw(st.booleans()))
    return tenant.encode(), p.model_dump_json().encode()


@st.composite
def scripts(draw: Any) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["decision"] * 4 + ["policy", "check", "check", "lookup"]))
        if kind == "decision":
            k, v = _decision(draw)
            ops.append({"op": "decision", "key": b64(k), "value": b64(v), "partition": draw(st.integers(0, 2))})
        elif kind == "policy":
            k, v = _policy(draw)
            ops.append({"op": "policy", "key": b64(k), "value": b64(v)})
        elif kind == "lookup":
            tenant, ip = draw(st.sampled_from(TENANTS[:2])), draw(st.sampled_from(IPS[:3]))
            ops.append({"op": "lookup", "entries": [[tenant, ip]]})
        else:
            entries = [["tenant", draw(st.sampled_from(TENANTS))], ["remote_address", draw(st.sampled_from(IPS))]]
            extra = draw(st.lists(st.sampled_from(
                [["method", "POST"], ["method", "TRACE"], ["path", "/api/items?q=<x>&y=\"é\""], ["path", ""],
                 ["path", "/" + "p" * 2100], ["other", "x"]]), max_size=2))
            entries = draw(st.permutations(entries + extra))
            ops.append({"op": "check", "entries": entries, "hits": draw(st.sampled_from([0, 1, 3, 500]))})
    return ops


def python_answers(ops: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """What the Python edge answers to each op (the reference)."""
    cache = DecisionCache()
    for op in ops:
        raw = {k: None if op.get(k) is None else base64.b64decode(op[k]) for k in ("key", "value")}
        if op["op"] == "decision":
            yield {"ok": cache.apply_decision(raw["key"], raw["value"], op["partition"])}
        elif op["op"] == "policy":
            yield {"ok": cache.apply_policy(raw["key"], raw["value"])}
        elif op["op"] == "lookup":
            v = cache.lookup(*op["entries"][0])
            yield {"state": v.name, "reason": v.reason, "limit": v.limit, "window": v.window, "reset_s": v.reset_s,
                   "shadow": v.shadow, "policy": v.policy}
        else:
            tenant = ip = None
            method, path = "GET", "/"
            for k, value in op["entries"]:
                if k == "tenant":
                    tenant = value
                elif k == "remote_address":
                    ip = canonical_ip(value)
                elif k == "method":
                    method = value
                elif k == "path":
                    path = value
            if tenant is None or ip is None:
                yield {"code": "OK", "headers": [], "events": []}
                continue
            v = cache.lookup(tenant, ip)
            status = (403 if v.state == BLOCKED else 429) if v.enforced else 200
            event = build("conform.1", CHECK_TS, tenant, ip, method, path, status, 0.0, 0)
            hits = min(max(op["hits"], 1), 100)
            yield {"code": "OVER_LIMIT" if v.enforced else "OK", "headers": [list(h) for h in headers(v)],
                   "events": [json.loads(event)] * hits if event is not None else []}


def go_answers(exe: Path, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = subprocess.run([str(exe), "-conform"], input="".join(json.dumps(op) + "\n" for op in ops).encode(),
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=scripts())
def test_go_service_answers_as_the_python_edge(rls_binary: Path, ops: list[dict[str, Any]]) -> None:
    """Same records, same checks: the same verdicts, codes, headers and request events."""
    got = go_answers(rls_binary, ops)
    want = list(python_answers(ops))
    assert len(got) == len(want)
    for op, g, w in zip(ops, got, want, strict=True):
        for raw in g.get("events", []):
            event = validate_event_json(json.dumps(raw).encode())  # the pipeline's strict decoder
            assert isinstance(event, RequestEvent)
        assert g == w, f"op {op}"


def test_canonical_ip_agrees(rls_binary: Path) -> None:
    """Both edges key a client by the same text of its address (or refuse the same non-addresses)."""
    values = [*IPS, "::FFFF:c000:0201", "1.2.3.4\n", "2001:DB8::A", "0:0:0:0:0:0:0:1", "1:0:0:2:0:0:0:3",
              "1::2:3:4:5:6:7", "256.1.1.1", "1.2.3", "::ffff:1.2.3.4%eth0", "1" * 46]
    got = go_answers(rls_binary, [{"op": "ip", "value": v} for v in values])
    assert [g["ip"] or None for g in got] == [canonical_ip(v) for v in values]


def test_exhausted_quota_refuses_the_next_check_in_both(rls_binary: Path) -> None:
    """The rate limiter's used-up-quota announcement is a throttle to both edges, with the same headers."""
    d = Decision.create(tenant_id="acme", ip="192.0.2.1", state="allowed", reason="exhausted:minute", limit=5,
                        remaining=0, reset_ts=T0 + timedelta(seconds=42), retry_after_s=42.0, ts=T0)
    ops = [{"op": "decision", "key": b64(b"acme:192.0.2.1"), "value": b64(d.model_dump_json().encode()),
            "partition": 0},
           {"op": "check", "entries": [["tenant", "acme"], ["remote_address", "192.0.2.1"]], "hits": 1}]
    got = go_answers(rls_binary, ops)
    assert got == list(python_answers(ops))
    assert got[1]["code"] == "OVER_LIMIT"
    assert got[1]["headers"] == [["retry-after", "42"], ["ratelimit", '"minute";r=0;t=42']]


def test_building_without_go_says_so_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No `go` anywhere: a one-line error naming what is missing, nothing half-built left behind."""
    monkeypatch.setattr(rls_service.shutil, "which", lambda _name: None)
    monkeypatch.setattr(rls_service, "_GO_FALLBACK", tmp_path / "no-go")
    with pytest.raises(rls_service.RlsBuildError) as err:
        rls_service.binary(tmp_path / "cache")
    assert "`go` was not found" in str(err.value)
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "cache").glob("rls/*"))


def test_a_build_is_reused_until_a_source_changes(rls_binary: Path, tmp_path: Path) -> None:
    """The same sources give the same built file (no rebuild); another source, another name."""
    assert rls_service.binary(rls_binary.parents[1]) == rls_binary
    src = tmp_path / "src"
    src.mkdir()
    for p in rls_service.SOURCE.glob("go.*"):
        (src / p.name).write_bytes(p.read_bytes())
    (src / "main.go").write_text("package main\n\nfunc main() {}\n")
    built = rls_service.binary(tmp_path / "cache", src=src)
    assert built.exists()
    assert built.name != rls_binary.name
    assert rls_service.binary(tmp_path / "cache", src=src) == built
