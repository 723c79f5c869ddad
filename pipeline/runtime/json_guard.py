"""Cheap checks on JSON record values, for refusing what is too costly to validate.

Pure functions over bytes and parsed values; `pipeline.runtime.codec` decides with them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json

__all__ = [
    "MAX_ARRAY_ITEMS",
    "MAX_OBJECT_KEYS",
    "SCAN_VALUES",
    "many_values",
    "oversized",
    "parse_array",
    "parse_json",
    "too_long",
]

# Pydantic reports every bad value, at ~8 µs each (25 µs through a Python validator): one 8 MB
# object of 700,000 unknown keys took 6-18 s to refuse, 800,000 bad IPs in a list 20 s. A record
# of more than `SCAN_VALUES` values (counted as commas, a cheap upper bound; the SDK's
# 1,000-event batches hold ~12,000) has its containers measured first: an object with more keys
# than its model has fields, any other object of more than `MAX_OBJECT_KEYS` keys or array of
# more than `MAX_ARRAY_ITEMS` items (above every bound of our schemas) is refused unvalidated.
SCAN_VALUES = 50_000
MAX_OBJECT_KEYS = 4096
MAX_ARRAY_ITEMS = 10_000


def many_values(value: bytes) -> bool:
    """Whether the record may hold more than `SCAN_VALUES` values: its containers are measured then."""
    return value.count(b",") > SCAN_VALUES


def parse_json(value: bytes) -> Any:
    """The JSON value (pydantic's parser: bounded nesting), or None if it is not JSON."""
    try:
        return from_json(value)
    except ValueError:
        return None  # validation says why, without many keys to report


def oversized(item: Any, fields: int | None) -> str | None:
    """Why one event is refused before validation (see `SCAN_VALUES`), or None."""
    if type(item) is dict and fields is not None and len(item) > fields:
        return f"an object of {len(item)} keys; the model has {fields} fields"
    stack = [item]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            if len(node) > MAX_OBJECT_KEYS:
                return f"an object of {len(node)} keys (at most {MAX_OBJECT_KEYS})"
            children: Iterable[Any] = node.values()
        elif type(node) is list:
            if len(node) > MAX_ARRAY_ITEMS:
                return f"an array of {len(node)} items (at most {MAX_ARRAY_ITEMS})"
            children = node
        else:
            continue
        stack += [c for c in children if type(c) is dict or type(c) is list]  # parsed JSON: exact types
    return None


def parse_array(value: bytes) -> list[Any] | str:
    """The items of a JSON array, or why it is not one."""
    try:
        items = json.loads(value)
    except RecursionError:
        return "invalid JSON: nested too deep"
    except (UnicodeDecodeError, ValueError) as exc:
        return f"invalid JSON: {exc}"
    return items if isinstance(items, list) else "not a JSON array"


def too_long(exc: ValidationError) -> int | None:
    """The length of a batch refused for being too long (the array's own error), else None."""
    if exc.error_count() != 1:
        return None
    err = exc.errors(include_url=False, include_input=False)[0]
    if err["type"] != "too_long" or err["loc"]:
        return None
    return int(err.get("ctx", {}).get("actual_length") or 0) or None
