"""JSON encoding of user payloads: once at the call, kept as bytes, decoded on read."""

from __future__ import annotations

from typing import Any

import orjson

from ._exceptions import InvalidOptionError

_NULL = b"null"


def encode(field: str, value: Any) -> bytes:
    """Encode `value` for the field named `field`, or raise an error naming both."""
    if value is None:
        return _NULL
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise InvalidOptionError(field, value, f"cannot be encoded as JSON ({exc})") from None


def decode(raw: bytes | None) -> Any:
    if raw is None or raw == _NULL:
        return None
    return orjson.loads(raw)
