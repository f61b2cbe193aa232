"""The journal's payload codec: one batch of change records <-> one orjson frame payload.

Payload (schema version 1)::

    {"v": 1, "c": [change, change, ...]}

Each change is the core's tuple as a JSON array (``["add", {...}]``, ``["set", id, {...}]``,
``["del", id]``, ``["queue", name, {...}]``, ``["rng", n]``, ``["meta", {...}]``,
``["child", parent, child, status, {"j": <json>} or {"p": reason}]``). Field
values are encoded so decoding restores the exact Python values the core held:

* `JobState` as its string value, tuples as arrays, `Backoff`/`Retention` as small objects
  (a non-finite float in them as the string ``"inf"``, ``"-inf"`` or ``"nan"``);
* ``data`` (JSON bytes, never None) is embedded as JSON with `orjson.Fragment`, without
  re-encoding; ``progress`` and ``return_value`` (JSON bytes or None) as ``null`` for None and
  as a one-element array ``[<json>]`` for bytes, so a value of ``null`` set by the user stays
  distinguishable from "never set". Decoding re-encodes the value with `orjson.dumps`, which
  gives back the original bytes because they were produced by `orjson.dumps` in the first
  place (`actorq._codec.encode`);
* ``children`` (a parent's ``{child id: (status, value bytes or reason)}``) as a list of
  ``[child id, status, {"j": <json>}]`` for bytes or ``[child id, status, {"p": value}]``;
* an ``add`` record leaves out every field equal to its default in `JobRecord`, so a snapshot
  of a million small jobs stays small; decoding lets `JobRecord` fill the defaults in.

Fields a newer or older `JobRecord` does not know are dropped when decoding (a removed
field), and missing ones take their defaults (an added field), so a journal written before a
field was added still replays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Final

import attrs
import orjson

from ._core.records import Backoff, JobRecord, Retention
from ._core.states import JobState

__all__ = [
    "SCHEMA_VERSION",
    "SNAPSHOT_MAGIC",
    "PayloadError",
    "decode_batch",
    "decode_change",
    "decode_snapshot",
    "encode_batch",
    "encode_snapshot",
    "human_change",
    "human_fields",
]

SCHEMA_VERSION: Final = 1

Change = tuple[Any, ...]

_MISSING: Final = object()
#: Fields of an ``add`` record that may be left out, with the default to compare against.
_DEFAULTS: Final[dict[str, Any]] = {
    f.name: f.default
    for f in attrs.fields(JobRecord)
    if f.default is not attrs.NOTHING and type(f.default).__name__ != "Factory"
}
_NULLABLE_JSON: Final = frozenset({"progress", "return_value"})


class PayloadError(ValueError):
    """A frame's payload is not a batch this version of actorq can read."""


# ---------------------------------------------------------------------- encoding


def _float_out(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return repr(value)  # "inf", "-inf", "nan"


def _default(value: Any) -> Any:
    if type(value) is bytes:
        return orjson.Fragment(value)
    if type(value) is Backoff:
        return {
            "kind": value.kind,
            "delay": _float_out(value.delay),
            "jitter": _float_out(value.jitter),
            "max_delay": _float_out(value.max_delay),
        }
    if type(value) is Retention:
        return {"count": value.count, "age": _float_out(value.age)}
    raise TypeError(f"the journal cannot encode {type(value).__name__} {value!r}")


def _nullable_json_out(value: bytes | None) -> Any:
    return None if value is None else [orjson.Fragment(value)]


def _children_out(value: dict[int, tuple[str, Any]] | None) -> Any:
    if value is None:
        return None
    return [
        [child, status, {"j": orjson.Fragment(v)} if type(v) is bytes else {"p": v}]
        for child, (status, v) in value.items()
    ]


#: Fields that need more than orjson's own encoding (and `_default`).
_FIELD_OUT: Final[dict[str, Callable[[Any], Any]]] = {
    "progress": _nullable_json_out,
    "return_value": _nullable_json_out,
    "children": _children_out,
}
_SPECIAL: Final = frozenset(_FIELD_OUT)


def _encode_set(fields: dict[str, Any]) -> dict[str, Any]:
    out = dict(fields)
    for name in _SPECIAL.intersection(out):
        out[name] = _FIELD_OUT[name](out[name])
    return out


def _encode_add(fields: dict[str, Any]) -> dict[str, Any]:
    defaults = _DEFAULTS
    out: dict[str, Any] = {}
    for name, value in fields.items():
        default = defaults.get(name, _MISSING)
        if value is default or (type(value) is type(default) and value == default):
            continue
        if name in _SPECIAL:
            out[name] = _FIELD_OUT[name](value)
        else:
            out[name] = value
    return out


def _encodable(change: Change) -> Any:
    kind = change[0]
    if kind == "set":
        fields = change[2]
        if _SPECIAL.isdisjoint(fields):
            return change
        return ("set", change[1], _encode_set(fields))
    if kind == "add":
        return ("add", _encode_add(change[1]))
    if kind == "child":
        payload = change[4]
        boxed = {"j": orjson.Fragment(payload)} if type(payload) is bytes else {"p": payload}
        return ("child", change[1], change[2], change[3], boxed)
    return change


def encode_batch(changes: list[Change]) -> bytes:
    """One batch of change records as one frame payload."""
    return orjson.dumps({"v": SCHEMA_VERSION, "c": [_encodable(c) for c in changes]}, _default)


# ---------------------------------------------------------------------- decoding


def _float_in(value: Any) -> Any:
    return float(value) if type(value) is str else value


def _backoff(value: Any) -> Backoff | None:
    if value is None:
        return None
    return Backoff(
        value["kind"],
        _float_in(value["delay"]),
        _float_in(value.get("jitter", 0.0)),
        _float_in(value.get("max_delay")),
    )


def _retention(value: Any) -> Retention:
    return Retention(count=value.get("count"), age=_float_in(value.get("age")))


def _json_bytes(value: Any) -> bytes:
    return orjson.dumps(value)


def _nullable_json_bytes(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value[0])


def _children_in(value: Any) -> dict[int, tuple[str, Any]] | None:
    if value is None:
        return None
    return {
        child: (status, orjson.dumps(v["j"]) if "j" in v else v["p"]) for child, status, v in value
    }


def _identity(value: Any) -> Any:
    return value


_DECODERS: Final[dict[str, Callable[[Any], Any]]] = dict.fromkeys(
    (f.name for f in attrs.fields(JobRecord)), _identity
)
_DECODERS.update(
    {
        "state": {s.value: s for s in JobState}.__getitem__,
        "data": _json_bytes,
        "progress": _nullable_json_bytes,
        "return_value": _nullable_json_bytes,
        "tags": tuple,
        "stacktrace": tuple,
        "logs": tuple,
        "depends_on_job_ids": tuple,
        "depends_on_tags": tuple,
        "backoff": _backoff,
        "remove_on_complete": _retention,
        "remove_on_fail": _retention,
        "children": _children_in,
    }
)


_KNOWN: Final = frozenset(_DECODERS)
#: Decoders that do something (the rest are the identity).
_CONVERT: Final[dict[str, Callable[[Any], Any]]] = {
    name: fn for name, fn in _DECODERS.items() if fn is not _identity
}
_CONVERTED: Final = frozenset(_CONVERT)


def _decode_fields(fields: dict[str, Any]) -> dict[str, Any]:
    keys = fields.keys()
    if not keys <= _KNOWN:
        for name in keys - _KNOWN:
            del fields[name]
    convert = _CONVERT
    for name in _CONVERTED.intersection(keys):
        fields[name] = convert[name](fields[name])
    return fields


def decode_change(raw: list[Any]) -> Change:
    kind = raw[0]
    if kind == "set":
        return ("set", raw[1], _decode_fields(raw[2]))
    if kind == "add":
        return ("add", _decode_fields(raw[1]))
    if kind in ("del", "queue", "rng", "meta", "snapshot"):
        return tuple(raw)
    if kind == "child":
        boxed = raw[4]
        payload = orjson.dumps(boxed["j"]) if "j" in boxed else boxed["p"]
        return ("child", raw[1], raw[2], raw[3], payload)
    raise PayloadError(f"unknown change record kind {kind!r}")


def decode_batch(payload: bytes) -> list[Change]:
    """The change records of one frame (or snapshot) payload, with their Python types."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"payload is not JSON ({exc})") from None
    if type(doc) is not dict or "v" not in doc:
        raise PayloadError("payload is not an actorq batch (no schema version)")
    version = doc["v"]
    if version != SCHEMA_VERSION:
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise PayloadError(
                f"batch schema version {version} was written by a newer actorq "
                f"(this one reads version {SCHEMA_VERSION})"
            )
        raise PayloadError(f"unsupported batch schema version {version!r}")
    try:
        return [decode_change(raw) for raw in doc["c"]]
    except PayloadError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise PayloadError(f"malformed change record ({type(exc).__name__}: {exc})") from None


# ---------------------------------------------------------------------- snapshots

#: A snapshot is a sequence of chunks, each ``<u32 length><batch payload>``, after this magic:
#: one huge JSON document decodes superlinearly (orjson on 1M jobs: 14x the time of 200k), and
#: chunks also keep the peak memory of a reopen to one chunk's worth of decoded records.
SNAPSHOT_MAGIC: Final = b"AQS1"
SNAPSHOT_CHUNK: Final = 10_000


def encode_snapshot(changes: list[Change]) -> bytes:
    parts = [SNAPSHOT_MAGIC]
    for start in range(0, len(changes), SNAPSHOT_CHUNK):
        chunk = encode_batch(changes[start : start + SNAPSHOT_CHUNK])
        parts.append(len(chunk).to_bytes(4, "little"))
        parts.append(chunk)
    return b"".join(parts)


def decode_snapshot(payload: bytes) -> Iterator[Change]:
    """The change records of a snapshot, chunk by chunk (a one-document snapshot, as
    written before chunking, is read whole)."""
    if not payload.startswith(SNAPSHOT_MAGIC):
        yield from decode_batch(payload)
        return
    view = memoryview(payload)
    at = len(SNAPSHOT_MAGIC)
    while at < len(payload):
        if at + 4 > len(payload):
            raise PayloadError(f"snapshot chunk header cut at byte {at}")
        size = int.from_bytes(view[at : at + 4], "little")
        at += 4
        if at + size > len(payload):
            raise PayloadError(f"snapshot chunk at byte {at} runs past the end")
        yield from decode_batch(bytes(view[at : at + size]))
        at += size


# ---------------------------------------------------------------------- for humans


def _human_value(name: str, value: Any) -> Any:
    if name == "data" or name in _NULLABLE_JSON:
        return None if value is None else orjson.loads(value)
    if name == "children" and value is not None:
        return [
            [child, status, orjson.loads(v) if type(v) is bytes else v]
            for child, (status, v) in value.items()
        ]
    if isinstance(value, Backoff | Retention):
        return {k: _float_out(v) for k, v in attrs.asdict(value).items()}
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def human_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A record's fields as plain JSON values (payloads decoded), for the command line."""
    return {name: _human_value(name, value) for name, value in fields.items()}


def human_change(change: Change) -> list[Any]:
    """A change record as plain JSON values, for ``actorq dump`` and ``actorq show``."""
    kind = change[0]
    if kind == "set":
        return ["set", change[1], human_fields(change[2])]
    if kind == "add":
        return ["add", human_fields(change[1])]
    return list(change)
