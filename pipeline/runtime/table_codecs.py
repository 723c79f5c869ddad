"""Table keys and values stored by codecs of our own (faust-streaming's `Table` takes no `value_serializer`).

Faust reads a table's codecs from its key and value types' `_options.serializer` and passes
what the codec decodes through the type's `from_data`. A type here is a `TableValue`
subclass naming its codec; `register_codec` makes a pair of functions a named Faust codec.

Changelog topics are read back whole when a worker starts, and anyone who can produce to the
broker can write them. So no codec here carries code (no pickle), every one is bounded
(`max_bytes`), and a record a codec cannot read is *refused*: logged, counted in `refused`,
and decoded as None, which every table treats as an absent key. It never raises into Faust's
recovery (an exception there stalls the worker's start for good).

Codecs: `tw-json` (JSON values: rules, nonces, the trial and notification views), `tw-key`
(string keys), `tw-bytes` (bytes an agent parses itself), `register_state_codec` for
snapshots (`{"v": version, "s": snapshot}`), and the binary ones of the rate limiter and the multivariate detector.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = [
    "BYTES_CODEC",
    "JSON_CODEC",
    "KEY_CODEC",
    "MAX_VALUE_BYTES",
    "BytesValue",
    "JsonValue",
    "StrKey",
    "TableValue",
    "ours",
    "refused",
    "register_codec",
    "register_state_codec",
    "value_type",
]

log = logging.getLogger(__name__)

MAX_VALUE_BYTES = 8 << 20  # the producer's max request size: nothing we write is larger
JSON_CODEC = "tw-json"
BYTES_CODEC = "tw-bytes"
KEY_CODEC = "tw-key"
_KEY_MAX_BYTES = 1024
_LOGGED_PER_CODEC = 10  # then one line per 1000 refusals: a flood must not flood the log

# Records refused per codec, since the process started (reported in the worker's status).
refused: Counter[str] = Counter()
_OURS: set[str] = set()
_DUMPS: dict[str, Callable[[Any], bytes]] = {}


class TableValue:
    """Base of table key and value types: values are what the named codec decodes, unchanged.

    Subclasses set the codec: ``class _options: serializer = "<codec name>"``.
    """

    class _options:  # the attribute Faust reads a type's serializer from
        serializer = "raw"

    @classmethod
    def from_data(cls, data: Any, preferred_type: Any = None) -> Any:
        return data


def value_type(codec: str, doc: str) -> type[TableValue]:
    """A `TableValue` subclass naming `codec` (a table's `key_type=` or `value_type=`)."""
    options = type("_options", (), {"serializer": codec})
    return type(f"TableValue[{codec}]", (TableValue,), {"_options": options, "__doc__": doc})


JsonValue = value_type(JSON_CODEC, "Value type of tables holding plain JSON (dicts, lists, numbers, strings).")
BytesValue = value_type(BYTES_CODEC, "Value type of tables holding bytes their agent parses itself (strictly).")
StrKey = value_type(KEY_CODEC, "Key type of every table: a string, JSON-encoded (the bytes Faust's json wrote).")


def _refuse(name: str, reason: str) -> None:
    refused[name] += 1
    n = refused[name]
    if n <= _LOGGED_PER_CODEC or n % 1000 == 0:
        log.warning("refused a table record (codec %s, %d so far): %s; its key is treated as absent",
                    name, n, reason[:300])


def register_codec(name: str, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any],
                   max_bytes: int = MAX_VALUE_BYTES) -> None:
    """Register `dumps`/`loads` as the Faust codec `name` (idempotent: the last one wins).

    `loads` may raise on anything it does not accept: the record is refused (None), never
    passed on, and the exception never reaches Faust.
    """
    from faust.serializers import codecs

    class _Codec(codecs.Codec):
        def _dumps(self, obj: Any) -> bytes:
            return dumps(obj)

        def _loads(self, s: bytes) -> Any:
            if len(s) > max_bytes:
                _refuse(name, f"{len(s)} bytes (limit {max_bytes})")
                return None
            try:
                return loads(s)
            except Exception as exc:  # whatever a hostile record provokes: refuse it, go on
                _refuse(name, f"{type(exc).__name__}: {exc}")
                return None

    codecs.register(name, _Codec())
    _OURS.add(name)
    _DUMPS[name] = dumps


def dumper(name: object) -> Callable[[Any], bytes] | None:
    """The plain `dumps` of codec `name` if it is ours: what Faust's codec wrapper calls, without
    the wrapper (≈ 1 µs a call, most of a checkpoint's cost per key). None for other codecs."""
    return _DUMPS.get(name) if isinstance(name, str) else None


def ours(name: object) -> bool:
    """Whether `name` is a codec registered here (the table contract: no other codec)."""
    return isinstance(name, str) and name in _OURS


def _json_dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _key_dumps(key: Any) -> bytes:
    """A key as JSON text: a plain ASCII key without quotes or backslashes is quoted directly
    (what json.dumps writes for it, 4x faster); anything else goes through json."""
    if isinstance(key, str) and key.isascii() and key.isprintable() and '"' not in key and "\\" not in key:
        return b'"' + key.encode() + b'"'
    return _json_dumps(key)


def _key_loads(data: bytes) -> str:
    key = json.loads(data)
    if not isinstance(key, str):
        raise ValueError(f"a table key is a string, not {type(key).__name__}")
    return key


def register_state_codec(name: str, version: int, snapshot: Callable[[Any], Any],
                         restore: Callable[[Any], Any], max_bytes: int = MAX_VALUE_BYTES) -> None:
    """A codec for objects with a JSON-ready `snapshot` and a strict `restore` (raises on bad input).

    Encoded as ``{"v": version, "s": snapshot}``; another version is refused.
    """

    def dumps(obj: Any) -> bytes:
        return _json_dumps({"v": version, "s": snapshot(obj)})

    def loads(data: bytes) -> Any:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("v") != version or "s" not in doc:
            got = doc.get("v") if isinstance(doc, dict) else type(doc).__name__
            raise ValueError(f"not a {name} v{version} record (got {got!r:.40})")
        return restore(doc["s"])

    register_codec(name, dumps, loads, max_bytes)


register_codec(JSON_CODEC, _json_dumps, json.loads)
register_codec(KEY_CODEC, _key_dumps, _key_loads, _KEY_MAX_BYTES)
register_codec(BYTES_CODEC, bytes, bytes, 1 << 20)
