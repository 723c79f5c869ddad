"""Decoding Kafka record values into validated models, isolating what is bad.

A record value is either one JSON object (one event) or a JSON array of events (a batch, as
the publish SDK packs them to amortise per-record cost). Valid events pass; each bad event,
or a whole record that cannot be read at all, comes back as a `Rejected` with the reason and
the bytes to keep in the dead-letter topic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

__all__ = ["Codec", "Rejected", "encode_batch", "encode_one", "format_error"]

M = TypeVar("M", bound=BaseModel)
_ERROR_MAX = 2000
_WHITESPACE = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a record (index -1) or one event of a batch (index ≥ 0) was refused."""

    index: int
    error: str
    payload: bytes


def _is_branch_tag(part: object) -> bool:
    """Union branches show up in locations as tags like `constrained-str` or `function-after[...]`."""
    return isinstance(part, str) and ("[" in part or part in _BRANCH_TAGS)


_BRANCH_TAGS = {"constrained-str", "str", "int", "float", "none"}


def format_error(exc: ValidationError) -> str:
    """Pydantic's errors as one compact line: `field.path: message; ...`.

    For a union (e.g. an IP: a fast IPv4 pattern, then a full parser) only the last branch's
    message is kept: it is the most specific one.
    """
    by_loc: dict[str, str] = {}
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"] if not _is_branch_tag(p)) or "<record>"
        by_loc[loc] = err["msg"]
    return "; ".join(f"{loc}: {msg}" for loc, msg in by_loc.items())[:_ERROR_MAX]


class Codec(Generic[M]):
    """Decode record values into `model` instances; never raises on bad input."""

    def __init__(self, model: type[M], *, max_record_bytes: int = 8 << 20, max_events: int = 10_000):
        self.model = model
        self.max_record_bytes = max_record_bytes
        self.max_events = max_events
        self._one: TypeAdapter[M] = TypeAdapter(model)
        self._many: TypeAdapter[list[M]] = TypeAdapter(list[model])  # type: ignore[valid-type]

    def decode(self, value: bytes | None) -> tuple[list[M], list[Rejected]]:
        if not value:
            return [], [Rejected(-1, "empty message", b"")]
        if len(value) > self.max_record_bytes:
            return [], [Rejected(-1, f"record of {len(value)} bytes exceeds {self.max_record_bytes}", value)]
        first = value.lstrip(_WHITESPACE)[:1]
        if first == b"[":
            return self._decode_batch(value)
        if first == b"{":
            try:
                return [self._one.validate_json(value)], []
            except ValidationError as exc:
                return [], [Rejected(-1, format_error(exc), value)]
        return [], [Rejected(-1, "not a JSON object or array", value)]

    def _decode_batch(self, value: bytes) -> tuple[list[M], list[Rejected]]:
        try:
            events = self._many.validate_json(value)
        except ValidationError:
            pass  # slow path below finds out which items are bad
        else:
            if len(events) > self.max_events:
                return [], [Rejected(-1, f"batch of {len(events)} events exceeds {self.max_events}", value)]
            return events, []
        try:
            items = json.loads(value)
        except (UnicodeDecodeError, ValueError) as exc:
            return [], [Rejected(-1, f"invalid JSON: {exc}"[:_ERROR_MAX], value)]
        if not isinstance(items, list):  # pragma: no cover - first byte was '['
            return [], [Rejected(-1, "not a JSON array", value)]
        if len(items) > self.max_events:
            return [], [Rejected(-1, f"batch of {len(items)} events exceeds {self.max_events}", value)]
        good: list[M] = []
        bad: list[Rejected] = []
        for i, item in enumerate(items):
            try:
                good.append(self._one.validate_python(item))
            except ValidationError as exc:
                bad.append(Rejected(i, format_error(exc), _dump(item)))
        return good, bad


def _dump(item: Any) -> bytes:
    return json.dumps(item, ensure_ascii=False, default=str).encode()


def encode_one(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model)


def encode_batch(models: Sequence[BaseModel]) -> bytes:
    """A JSON array of models: the batch form every consumer of ours accepts."""
    return b"[" + b",".join(m.__pydantic_serializer__.to_json(m) for m in models) + b"]"
