"""What ClickHouse stores is the same through the row path as through the model path.

Uses the session's embedded chDB (no broker), so it carries the `integration` mark like the
other chDB tests; it runs in a few seconds.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

from pipeline.adapters.clickhouse.sinks import ClickHouseSink, load_capability_sinks
from pipeline.runtime.codec import Codec, RowCodec
from tests.unit.foundation.test_row_codec import MODELS, ODD_VALUES, SAMPLES, _edited

pytestmark = pytest.mark.integration


def _valid_variants(model: type[BaseModel]) -> bytes:
    """The sample and every single-field edit of it that the model accepts (odd-but-valid values)."""
    base = SAMPLES[model]
    variants = [base] + [_edited(base, [("set", name, value)]) for name in model.model_fields for value in ODD_VALUES]
    variants += [_edited(base, [("del", name, None)]) for name in model.model_fields]
    return json.dumps(variants).encode()


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_inserted_rows_are_identical(chdb_client: Any, model: type[BaseModel]) -> None:
    spec = next(s for s in load_capability_sinks().values() if s.model is model)
    value = _valid_variants(model)
    models, _ = Codec(model).decode(value)
    row_codec = RowCodec(model, columns=spec.columns)
    rows, _ = row_codec.decode(value)
    assert len(rows) == len(models) > 10
    suffix = uuid.uuid4().hex[:8]
    old, new = f"{spec.table}_old_{suffix}", f"{spec.table}_new_{suffix}"
    for table in (old, new):  # same columns and defaults; Memory keeps every row (no replacing merges)
        chdb_client.command(f"CREATE TABLE {table} AS {spec.table} ENGINE = Memory")
    try:
        sink = ClickHouseSink(chdb_client)
        sink.insert(old, spec.columns, models)
        half = len(rows) // 2  # two chunks, as the writer hands them over
        sink.insert_json(new, spec.columns, [row_codec.encode(rows[:half]), row_codec.encode(rows[half:])])
        query = "SELECT * FROM {} ORDER BY tuple(*)"
        stored_old = chdb_client.query(query.format(old)).result_rows
        stored_new = chdb_client.query(query.format(new)).result_rows
        assert len(stored_old) == len(models)
        assert stored_new == stored_old
    finally:
        for table in (old, new):
            chdb_client.command(f"DROP TABLE IF EXISTS {table}")
