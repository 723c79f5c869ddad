"""The bulk changelog writer produces exactly the bytes Faust's own table writes would."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.bulk import BatchAppender, BulkWriter

faust = pytest.importorskip("faust")


class _Codec:
    """A value type naming its codec, as the rate limiter's key table does."""

    class _options:
        serializer = "raw"

    @classmethod
    def from_data(cls, data: Any, preferred_type: Any = None) -> Any:
        return data


@pytest.mark.parametrize(("key_type", "value_type", "key", "value"), [
    (str, None, "acme:10.0.0.1", {"a": 1, "b": [1, 2]}),
    (str, bytes, "3|acme|29400000", b"[1,2,3]"),
    (str, _Codec, "k", b"\x00\x01binary"),
])
def test_bulk_bytes_match_faust_table_bytes(key_type: Any, value_type: Any, key: Any, value: Any) -> None:
    app = faust.App("tw-test-bulk", broker="kafka://127.0.0.1:1", store="memory://")
    table = app.Table("t", default=None, key_type=key_type, value_type=value_type)
    writer = BulkWriter(table, BatchAppender(app, []))
    ser = app.serializers
    assert writer._key(key) == ser.dumps_key(table.key_type, key, serializer=table.key_serializer)
    assert writer._value(value) == ser.dumps_value(table.value_type, value, serializer=table.value_serializer)
    # and what Faust reads back at recovery is the value we wrote
    assert ser.loads_value(table.value_type, writer._value(value), serializer=table.value_serializer) == value
