"""JSON encoding of user payloads: once at the call, kept as bytes, decoded on read."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import orjson

from ._exceptions import InvalidOptionError

_NULL = b"null"


def encode(field: str, value: Any) -> bytes:
    """Encode `value` for the field named `field`, or raise an error naming both.

    NaN and the infinities are refused: JSON has no spelling for them and orjson writes
    ``null``, so the value read back would not be the value given. Only an encoding that
    holds ``null`` can hide one, so only then is the value searched for them."""
    if value is None:
        return _NULL
    try:
        raw = orjson.dumps(value)
    except TypeError as exc:
        raise InvalidOptionError(field, value, f"cannot be encoded as JSON ({exc})") from None
    if _NULL in raw and _non_finite(value):
        raise InvalidOptionError(field, value, "holds NaN or an infinity, which JSON cannot carry")
    return raw


def _non_finite(value: Any) -> bool:
    """Whether `value` holds a float NaN or infinity anywhere orjson would encode it (its
    nesting is bounded: orjson refuses more than 254 levels before this runs)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_non_finite(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False


def decode(raw: bytes | None) -> Any:
    if raw is None or raw == _NULL:
        return None
    return orjson.loads(raw)
