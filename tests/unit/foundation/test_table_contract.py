"""Contract: every Faust table of the app reads its changelog with one of our own codecs (never pickle)."""

from __future__ import annotations

import warnings

import pytest
from faust.exceptions import SecurityWarning
from faust.serializers import codecs

from pipeline.runtime import table_codecs
from pipeline.runtime.app import CAPABILITIES, create_app
from pipeline.settings import Settings


def _tables() -> list[tuple[str, str, str]]:
    """(name, key codec, value codec) of every table a worker with every capability declares."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecurityWarning)  # Faust warns when a table declares pickle
        app, _ = create_app(Settings(app_id="contract"), CAPABILITIES)
    return [(name, t.key_serializer, t.value_serializer) for name, t in app.tables.items()]


def test_every_table_uses_one_of_our_codecs() -> None:
    """Would fail if any table (of any capability) named a codec not registered in pipeline.runtime.table_codecs."""
    tables = _tables()
    assert len(tables) >= 12, f"the tables were discovered from the app ({[n for n, *_ in tables]})"
    foreign = [(name, key, value) for name, key, value in tables
               if not (table_codecs.ours(key) and table_codecs.ours(value))]
    assert not foreign, f"tables with a codec of someone else's (pickle? raw? Faust's json?): {foreign}"


@pytest.mark.parametrize("name", ["pickle", "binary|pickle", "json", "raw", "pickle_restricted", "yaml"])
def test_the_contract_check_fails_on_other_codecs(name: str) -> None:
    """The check itself can fail: Faust's own codecs are not ours."""
    assert not table_codecs.ours(name)


def test_our_codecs_never_return_anything_for_a_pickle() -> None:
    """Every codec the tables use refuses pickle bytes (None), whatever the table."""
    payload = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."
    for _, key, value in _tables():
        for codec in (key, value):
            if codec != table_codecs.BYTES_CODEC:  # bytes are parsed (strictly) by their agent
                assert codecs.loads(codec, payload) is None, codec
