"""A signed command runs only from the key and partition its signed tenant routes to (pure check)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.runtime.replay import ReplayGuard, misrouted
from pipeline.sdk import partition_for


def test_the_tenants_own_key_on_its_own_partition_passes() -> None:
    """The routing the CLI uses (key = tenant, default partitioner) is accepted."""
    home = partition_for("acme", 4)
    assert misrouted("acme", b"acme", home, home) is None


@given(st.text(min_size=1, max_size=12), st.binary(max_size=12) | st.none(), st.integers(0, 7))
def test_any_other_key_or_partition_is_refused_with_a_reason(tenant: str, key: bytes | None, partition: int) -> None:
    """Would fail if a replay under another key, or forced onto another partition, could pass."""
    home = partition_for(tenant, 8)
    why = misrouted(tenant, key, partition, home)
    if key == tenant.encode() and partition == home:
        assert why is None
    else:
        assert why is not None
        assert why.startswith("misrouted command")
        assert f"partition {home}" in why


def test_prune_forgets_values_that_are_not_times() -> None:
    """A nonce table value we did not write (not a number) is pruned, not a crash."""
    guard = ReplayGuard(300.0, {"a" * 16: "x", "b" * 16: 1000.0})  # type: ignore[dict-item]
    assert sorted(guard.prune(1100.0)) == ["a" * 16]
