"""Table values stored by a codec of our choice (faust-streaming's `Table` takes no `value_serializer`).

Faust reads a table's value codec from its value type's `_options.serializer` and passes what
the codec decodes through the type's `from_data`. A value type here is a `TableValue`
subclass naming its codec; `register_codec` makes a pair of functions a named Faust codec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["TableValue", "register_codec"]


class TableValue:
    """Base of table value types: values are what the named codec decodes, unchanged.

    Subclasses set the codec: ``class _options: serializer = "<codec name>"``.
    """

    class _options:  # the attribute Faust reads a type's serializer from
        serializer = "raw"

    @classmethod
    def from_data(cls, data: Any, preferred_type: Any = None) -> Any:
        return data


def register_codec(name: str, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]) -> None:
    """Register `dumps`/`loads` as the Faust codec `name` (idempotent: the last one wins)."""
    from faust.serializers import codecs

    class _Codec(codecs.Codec):
        def _dumps(self, obj: Any) -> bytes:
            return dumps(obj)

        def _loads(self, s: bytes) -> Any:
            return loads(s)

    codecs.register(name, _Codec())
