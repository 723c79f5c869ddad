"""The bulk changelog writer produces exactly the bytes Faust's own table writes would."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.runtime.bulk import BatchAppender, BulkWriter

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


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_bulk_batches_hold_a_megabyte_compressed_like_the_producer(compression: str | None) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer
    from aiokafka.record.default_records import DefaultRecordBatch

    from pipeline.runtime.bulk import BATCH_BYTES, _new_batch

    async def fill() -> tuple[int, int, Any]:
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", compression_type=compression)
        try:
            ours, theirs = _new_batch(producer), producer.create_batch()
            counts = []
            for batch in (ours, theirs):
                n = 0
                while batch.append(key=b"k", value=b"x" * 1000, timestamp=None) is not None:
                    n += 1
                counts.append(n)
            return counts[0], counts[1], DefaultRecordBatch(bytes(ours._build()))
        finally:
            await producer.stop()  # never started: releases what the constructor made

    ours, theirs, built = asyncio.run(fill())
    assert BATCH_BYTES // 1100 < ours <= BATCH_BYTES // 1000  # ~1 kB records up to BATCH_BYTES
    assert theirs < ours / 10  # the producer's own batches stay small (Faust's 16 kB default)
    expected = {None: 0, "gzip": DefaultRecordBatch.CODEC_GZIP}[compression]
    assert built.compression_type == expected
    assert built.next_offset == ours  # every record appended is in the batch


@given(st.text(max_size=40))
def test_the_fast_key_dumper_writes_what_json_writes(key: str) -> None:
    """Checkpoints write keys with the plain dumper: the bytes must be Faust's json codec's (readable back)."""
    import json

    from faust.serializers import codecs

    from pipeline.runtime.table_codecs import KEY_CODEC, dumper

    fast = dumper(KEY_CODEC)
    assert fast is not None
    assert fast(key) == json.dumps(key, separators=(",", ":")).encode() == codecs.dumps(KEY_CODEC, key)
    assert codecs.loads(KEY_CODEC, fast(key)) == key


def test_every_codec_of_ours_has_a_plain_dumper_equal_to_its_faust_codec() -> None:
    """Would fail if a bulk write skipped part of a codec (a chained node) and wrote other bytes."""
    from faust.serializers import codecs

    from pipeline.runtime.table_codecs import BYTES_CODEC, JSON_CODEC, dumper

    for name, value in ((JSON_CODEC, {"a": [1, 2.5, None]}), (BYTES_CODEC, b"\x00raw")):
        plain = dumper(name)
        assert plain is not None
        assert plain(value) == codecs.dumps(name, value)
    assert dumper("json") is None  # Faust's own codecs keep Faust's path
