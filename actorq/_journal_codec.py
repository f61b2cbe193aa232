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
* an ``add`` record leaves out every field equal to its default in `JobRecord`;
  decoding lets `JobRecord` fill the defaults in.

Schema version 2 adds one item: a run of ``add`` records as columns,
``["jobs", n, {field name: column}]`` (see "Schema version 2" below). Snapshot chunks always
use it; a frame uses it for a run of at least `JOBS_MIN_RUN` adds (an ``add_bulk``) and is
written as version 1, byte for byte as before, when it holds no such run. Decoding reads both.
An ``add`` record decoded from a ``jobs`` item holds a row (a tuple of every field in
`FIELD_NAMES` order) instead of a dict; `JobRecord.from_fields` takes either, `add_fields`
gives the dict.

Schema version 3 adds job schedulers' records (see `actorq._journal_schedulers`).

Schema version 4 adds deduplication keys: ``["dedup", queue, key, job id, expires_at, row]``
(``row``: null, or in a snapshot the fields of a removed job a throttle key still names, as an
``add`` record writes them) and ``["dedup-del", queue, key]``. A batch holding either is
written as version 4, so an older actorq refuses it by name; any other is written as before.
Version 4 also holds ``["group", queue, group, limiter fields]``: the rate-limit window of one
group of a queue (see `actorq._core.groups`).

Fields a newer or older `JobRecord` does not know are dropped when decoding (a removed
field), and missing ones take their defaults (an added field), so a journal written before a
field was added still replays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from itertools import compress, repeat
from operator import is_not, itemgetter
from typing import Any, Final

import attrs
import orjson

from ._core.commands import Change
from ._core.records import FIELD_NAMES, KEEP_ALL, Backoff, JobRecord, Retention
from ._core.states import JobState
from ._journal_schedulers import scheduler_in as _scheduler_in
from ._journal_schedulers import scheduler_out as _scheduler_out
from ._journal_values import _backoff, _float_in, _retention

__all__ = [
    "SCHEMA_VERSION",
    "SNAPSHOT_MAGIC",
    "PayloadError",
    "add_fields",
    "decode_batch",
    "decode_change",
    "decode_snapshot",
    "encode_batch",
    "encode_snapshot",
    "human_change",
    "human_fields",
]

#: The newest batch schema this actorq reads and writes (see the module docstring).
SCHEMA_VERSION: Final = 4
#: The version of a batch holding a ``jobs`` item and no scheduler record.
_JOBS_VERSION: Final = 2
#: The version of a batch holding a scheduler record and no deduplication record.
_SCHEDULERS_VERSION: Final = 3
_SCHEDULER_KINDS: Final = ("scheduler", "scheduler-del")
_V4_KINDS: Final = ("dedup", "dedup-del", "group")


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


def _encode_set(fields: dict[str, Any]) -> dict[str, Any] | None:
    """The fields of a ``set`` with the special ones boxed; None if none needs it (a None
    progress, return value or children is written as ``null`` either way)."""
    out: dict[str, Any] | None = None
    for name in _SPECIAL.intersection(fields):
        value = fields[name]
        if value is not None:
            if out is None:
                out = dict(fields)
            out[name] = _FIELD_OUT[name](value)
    return out


#: `_DEFAULTS` in `FIELD_NAMES` order, `_MISSING` for a field without a default.
_DEFAULT_ROW: Final = tuple(_DEFAULTS.get(name, _MISSING) for name in FIELD_NAMES)


def _encode_add(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any]
    if tuple(fields) == FIELD_NAMES:
        # The usual case, `JobRecord.fields()` of a record made live, whose defaults are the
        # default objects themselves: an identity test per field, run in C (faster than
        # the loop below). A value merely equal to its default is written out; it decodes to
        # the same value.
        out = dict(compress(fields.items(), map(is_not, fields.values(), _DEFAULT_ROW)))
        if not _SPECIAL.isdisjoint(out):
            for name in _SPECIAL.intersection(out):
                out[name] = _FIELD_OUT[name](out[name])
        return out
    defaults = _DEFAULTS
    out = {}
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
        boxed = _encode_set(fields)
        return change if boxed is None else ("set", change[1], boxed)
    if kind == "add":
        return ("add", _encode_add(add_fields(change)))
    if kind == "scheduler":
        return ("scheduler", change[1], change[2], _scheduler_out(change[3]))
    if kind == "dedup" and change[5] is not None:
        return (*change[:5], _encode_add(add_fields(("add", change[5]))))
    if kind == "child":
        payload = change[4]
        boxed_child = {"j": orjson.Fragment(payload)} if type(payload) is bytes else {"p": payload}
        return ("child", change[1], change[2], change[3], boxed_child)
    return change


_kind: Final = itemgetter(0)
#: Runs of at least this many ``add`` records go as one ``jobs`` item (columns) in a batch.
JOBS_MIN_RUN: Final = 8


def _items(changes: list[Change], min_run: int) -> tuple[list[Any], bool]:
    """The JSON-ready items of a batch, and whether one is a ``jobs`` item."""
    if "add" not in map(_kind, changes):  # most batches of a busy runtime: sets
        isdisjoint = _SPECIAL.isdisjoint
        return [c if c[0] == "set" and isdisjoint(c[2]) else _encodable(c) for c in changes], False
    items: list[Any] = []
    append = items.append
    run: list[Any] = []  # fields of adds: dicts, or rows
    jobs = False
    special = _SPECIAL
    for change in changes:
        kind = change[0]
        if kind == "add":
            run.append(change[1])
            continue
        if run:
            jobs |= _add_run(items, run, min_run)
            run = []
        if kind == "set" and special.isdisjoint(change[2]):
            append(change)  # as it is: most records of a busy runtime
        else:
            append(_encodable(change))
    if run:
        jobs |= _add_run(items, run, min_run)
    return items, jobs


def _add_run(items: list[Any], run: list[Any], min_run: int) -> bool:
    if len(run) >= min_run:
        item = _jobs_item(run)
        if item is not None:
            items.append(item)
            return True
    items.extend(("add", _encode_add(add_fields(("add", fields)))) for fields in run)
    return False


def encode_batch(changes: list[Change]) -> bytes:
    """One batch of change records as one frame payload (version 1 unless it holds a run of
    adds, which goes as columns: version 2)."""
    items, jobs = _items(changes, JOBS_MIN_RUN)
    version = _version(changes, _JOBS_VERSION if jobs else 1)
    return orjson.dumps({"v": version, "c": items}, _default)


def _version(changes: list[Change], least: int) -> int:
    """The oldest schema that can hold `changes` (`least` for their jobs)."""
    kinds = set(map(_kind, changes))
    if not kinds.isdisjoint(_V4_KINDS):
        return SCHEMA_VERSION
    if not kinds.isdisjoint(_SCHEDULER_KINDS):
        return _SCHEDULERS_VERSION
    return least


# ---------------------------------------------------------------------- decoding


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


_Plan = tuple[tuple[str, ...], tuple[tuple[str, Callable[[Any], Any]], ...]]
#: Per shape of a record's fields (their names, in order): the names to drop (fields this
#: `JobRecord` does not know) and the converters to run. The core writes a few dozen shapes;
#: working each out once saves set operations on every record of a replay.
_SHAPES: Final[dict[tuple[str, ...], _Plan]] = {}
_MAX_SHAPES: Final = 4096


def _shape_plan(shape: tuple[str, ...]) -> _Plan:
    plan = (
        tuple(name for name in shape if name not in _KNOWN),
        tuple((name, _CONVERT[name]) for name in shape if name in _CONVERTED),
    )
    if len(_SHAPES) < _MAX_SHAPES:  # a damaged journal must not grow it without bound
        _SHAPES[shape] = plan
    return plan


def _decode_fields(fields: dict[str, Any]) -> dict[str, Any]:
    shape = tuple(fields)
    plan = _SHAPES.get(shape)
    drop, convert = _shape_plan(shape) if plan is None else plan
    for name in drop:
        del fields[name]
    for name, fn in convert:
        fields[name] = fn(fields[name])
    return fields


def decode_change(raw: list[Any]) -> Change:
    kind = raw[0]
    if kind == "set":
        return ("set", raw[1], _decode_fields(raw[2]))
    if kind == "add":
        return ("add", _decode_fields(raw[1]))
    if kind in ("del", "queue", "rng", "meta", "snapshot", "scheduler-del", "dedup-del", "group"):
        return tuple(raw)
    if kind == "dedup":
        row = raw[5]
        return (*raw[:5], None if row is None else _decode_fields(row))
    if kind == "scheduler":
        return ("scheduler", raw[1], raw[2], _scheduler_in(raw[3]))
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
    if version not in (1, _JOBS_VERSION, _SCHEDULERS_VERSION, SCHEMA_VERSION):
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise PayloadError(
                f"batch schema version {version} was written by a newer actorq "
                f"(this one reads versions 1 to {SCHEMA_VERSION})"
            )
        raise PayloadError(f"unsupported batch schema version {version!r}")
    try:
        out: list[Change] = []
        append = out.append
        shapes = _SHAPES
        for raw in doc["c"]:
            if raw[0] == "set":  # most records: `_decode_fields` inlined
                fields = raw[2]
                shape = tuple(fields)
                plan = shapes.get(shape)
                drop, convert = _shape_plan(shape) if plan is None else plan
                for name in drop:
                    del fields[name]
                for name, fn in convert:
                    fields[name] = fn(fields[name])
                append(("set", raw[1], fields))
            elif raw[0] == _JOBS and version != 1:
                out += _decode_jobs(raw[1], raw[2])
            else:
                append(decode_change(raw))
        return out
    except PayloadError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise PayloadError(f"malformed change record ({type(exc).__name__}: {exc})") from None


# ---------------------------------------------------------------------- snapshots

#: A snapshot is a sequence of chunks, each ``<u32 length><batch payload>``, after a magic:
#: one huge JSON document decodes superlinearly in its size, and
#: chunks also keep the peak memory of a reopen to one chunk's worth of decoded records.
#: ``AQS1`` chunks are version-1 batches; ``AQS2`` chunks, what `encode_snapshot` writes, are
#: version-2 batches (jobs as columns). A payload with neither magic is one version-1 batch
#: (written before chunking).
SNAPSHOT_MAGIC_V1: Final = b"AQS1"
SNAPSHOT_MAGIC: Final = b"AQS2"
SNAPSHOT_CHUNK: Final = 10_000

# Schema version 2::
#
#     {"v": 2, "c": [item, item, ...]}
#
# Each item is a change as in version 1, or a run of ``add`` records as one item
# ``["jobs", n, {field name: column}]`` holding the n records column by column: a column is a
# list of n values, or ``{"k": value}`` when all n are the same (most optional fields of most
# jobs hold their default, so a column of a million defaults costs a few bytes). Decoding
# yields each record as ``("add", row)``, the row a tuple of every field in `FIELD_NAMES`
# order, which `JobRecord.from_fields` builds positionally; columns are converted in bulk and
# rows assembled by `zip`, so loading costs no Python work per field of each job. Columns are
# named, so a field added later takes its default and a field removed is dropped, as in
# version 1. Column values: ``data``, ``progress`` and ``return_value`` (JSON bytes) as JSON
# strings holding that text (``null`` for None), so decoding neither parses nor re-encodes
# them; `JobState` as its value; `Backoff` as ``[kind, delay, jitter, max_delay]`` and
# `Retention` as ``[count, age]`` (non-finite floats as in version 1); ``children`` as in
# version 1; tuples as arrays; the rest as themselves.

_COLUMN_KINDS: Final[dict[str, str]] = dict.fromkeys(FIELD_NAMES, "plain")
_COLUMN_KINDS.update(
    {
        "state": "state",
        "data": "json",
        "progress": "json?",
        "return_value": "json?",
        "tags": "tuple",
        "stacktrace": "tuple",
        "logs": "tuple",
        "depends_on_job_ids": "tuple",
        "depends_on_tags": "tuple",
        "backoff": "backoff",
        "remove_on_complete": "retention",
        "remove_on_fail": "retention",
        "children": "children",
    }
)
_STATES: Final[dict[str, JobState]] = {s.value: s for s in JobState}
_JOBS: Final = "jobs"


def _backoff_out(value: Backoff | None) -> Any:
    if value is None:
        return None
    return [
        value.kind,
        _float_out(value.delay),
        _float_out(value.jitter),
        _float_out(value.max_delay),
    ]


def _retention_out(value: Retention) -> Any:
    return [value.count, _float_out(value.age)]


def _column_out(kind: str, values: list[Any]) -> Any:
    """A column as JSON-ready values, or ``{"k": value}`` if every value is the same."""
    n = len(values)
    first = values[0]
    if kind in {"plain", "state"}:
        if values.count(first) == n and len(set(map(type, values))) == 1:
            return {"k": first}  # == alone would merge 1, 1.0 and True
        return values
    if kind == "json":
        if values.count(first) == n:
            return {"k": first.decode()}
        return [v.decode() for v in values]
    if kind == "json?":
        if values.count(first) == n:
            return {"k": None if first is None else first.decode()}
        return [None if v is None else v.decode() for v in values]
    if kind == "tuple":
        if first == () and values.count(first) == n and len(set(map(type, values))) == 1:
            return {"k": ()}
        return values
    if kind == "children":
        if first is None and values.count(None) == n:
            return {"k": None}
        return [_children_out(v) for v in values]
    out = _backoff_out if kind == "backoff" else _retention_out
    if len(set(map(id, values))) == 1:  # one object: a default, or one spec's option
        return {"k": out(first)}
    return [out(v) for v in values]


def _jobs_item(fields: list[Any]) -> list[Any] | None:
    """A run of ``add`` records' fields (`JobRecord.fields()` dicts or `JobRecord.row()`
    tuples) as one ``jobs`` item; None if they are not complete (then they go as version-1
    records)."""
    kinds = set(map(type, fields))
    if kinds == {tuple}:
        rows: list[Any] = fields
    elif kinds == {dict}:
        if set(map(len, fields)) != {len(FIELD_NAMES)}:
            return None
        try:
            rows = list(map(itemgetter(*FIELD_NAMES), fields))
        except KeyError:
            return None
    else:  # a mix (or something else): as version-1 records
        return None
    if set(map(len, rows)) != {len(FIELD_NAMES)}:
        return None
    try:
        columns = {
            name: _column_out(_COLUMN_KINDS[name], list(column))
            for name, column in zip(FIELD_NAMES, zip(*rows, strict=True), strict=True)
        }
    except (AttributeError, TypeError, UnicodeDecodeError):
        return None  # a value of an unexpected type: version-1 records say what is wrong
    return [_JOBS, len(rows), columns]


def _encode_snapshot_chunk(changes: list[Change]) -> bytes:
    items, _ = _items(changes, 1)
    return orjson.dumps({"v": _version(changes, _JOBS_VERSION), "c": items}, _default)


def encode_snapshot(changes: list[Change]) -> bytes:
    parts = [SNAPSHOT_MAGIC]
    for start in range(0, len(changes), SNAPSHOT_CHUNK):
        chunk = _encode_snapshot_chunk(changes[start : start + SNAPSHOT_CHUNK])
        parts.append(len(chunk).to_bytes(4, "little"))
        parts.append(chunk)
    return b"".join(parts)


def _one_backoff(raw: Any) -> Backoff | None:
    if raw is None:
        return None
    kind, delay, jitter, max_delay = raw
    return Backoff(kind, _float_in(delay), _float_in(jitter), _float_in(max_delay))


def _one_retention(raw: Any) -> Retention:
    count, age = raw
    age = _float_in(age)
    if count is None and age is None:
        return KEEP_ALL
    return Retention(count=count, age=age)


def _cached(make: Callable[[Any], Any]) -> Callable[[list[Any]], list[Any]]:
    """Decode a column of small objects, making each distinct one once."""

    def column(values: list[Any]) -> list[Any]:
        cache: dict[Any, Any] = {}
        out = []
        for raw in values:
            # With the types: 3 == 3.0, but a value must come back as it went.
            key = raw if raw is None else (*raw, *map(type, raw))
            obj = cache.get(key, _MISSING)
            if obj is _MISSING:
                obj = cache[key] = make(raw)
            out.append(obj)
        return out

    return column


def _one_tuple(raw: Any) -> tuple[Any, ...]:
    return tuple(raw)


def _one_json(raw: Any) -> bytes:
    return raw.encode()  # type: ignore[no-any-return]


def _one_json_or_none(raw: Any) -> bytes | None:
    return None if raw is None else raw.encode()


#: Per column kind: (one value, a whole column) from JSON to Python.
_COLUMN_IN: Final[dict[str, tuple[Callable[[Any], Any], Callable[[list[Any]], Any]]]] = {
    "plain": (_identity, _identity),
    "state": (_STATES.__getitem__, lambda col: list(map(_STATES.__getitem__, col))),
    "json": (_one_json, lambda col: list(map(str.encode, col))),
    "json?": (_one_json_or_none, lambda col: list(map(_one_json_or_none, col))),
    "tuple": (_one_tuple, lambda col: list(map(tuple, col))),
    "backoff": (_one_backoff, _cached(_one_backoff)),
    "retention": (_one_retention, _cached(_one_retention)),
    "children": (_children_in, lambda col: list(map(_children_in, col))),
}
#: (name, kind, default or `_MISSING`) of every field, in `FIELD_NAMES` order.
_ROW_FIELDS: Final = tuple(
    (name, _COLUMN_KINDS[name], _DEFAULTS.get(name, _MISSING)) for name in FIELD_NAMES
)


def _decode_jobs(n: Any, columns: Any) -> list[Change]:
    if type(n) is not int or n < 0 or type(columns) is not dict:
        raise PayloadError("malformed jobs item")
    if n > 1 and type(columns.get("id")) is not list:  # ids differ: a constant one is bogus
        raise PayloadError(f"jobs item of {n} records without a column of ids")
    built: list[Any] = []
    for name, kind, default in _ROW_FIELDS:
        raw = columns.get(name, _MISSING)
        one, many = _COLUMN_IN[kind]
        if raw is _MISSING:  # a field added since: its default
            if default is _MISSING:
                raise PayloadError(f"jobs item has no column {name!r}")
            built.append(repeat(default, n))
        elif type(raw) is dict:
            value = one(raw["k"])
            if kind == "children" and value is not None:
                built.append([one(raw["k"]) for _ in range(n)])  # no shared dicts
            else:
                built.append(repeat(value, n))
        elif type(raw) is list and len(raw) == n:
            built.append(many(raw))
        else:
            raise PayloadError(f"jobs item: column {name!r} does not hold {n} values")
    # A list, not a lazy zip: rows made together, then records made together, lie together
    # in memory, so rebuilding the indexes of a million of them touches memory in order.
    return list(zip(repeat("add"), zip(*built, strict=False)))  # repeat() never ends


def decode_snapshot(payload: bytes) -> Iterator[Change]:
    """The change records of a snapshot, chunk by chunk (a one-document snapshot, as
    written before chunking, is read whole)."""
    if not payload.startswith((SNAPSHOT_MAGIC, SNAPSHOT_MAGIC_V1)):
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
        # Only the floats among the fields: a backoff's ``kind`` is a string.
        return {
            k: _float_out(v) if isinstance(v, float) else v for k, v in attrs.asdict(value).items()
        }
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
        return ["add", human_fields(add_fields(change))]
    if kind == "scheduler":  # as plain JSON values: the template's data decoded
        fields = orjson.loads(orjson.dumps(_scheduler_out(change[3]), _default))
        return ["scheduler", change[1], change[2], fields]
    if kind == "dedup" and change[5] is not None:  # a removed job's record, as plain values
        return [*change[:5], human_fields(add_fields(("add", change[5])))]
    if kind == "child":  # a child's value (JSON bytes) or its failure reason (a string)
        payload = change[4]
        return [*change[:4], orjson.loads(payload) if type(payload) is bytes else payload]
    return list(change)


def add_fields(change: Change) -> dict[str, Any]:
    """The fields of an ``add`` record by name, whether it holds them by name or as a row
    (from a snapshot: every field in `FIELD_NAMES` order)."""
    fields = change[1]
    if type(fields) is tuple:
        return dict(zip(FIELD_NAMES, fields, strict=True))
    return fields  # type: ignore[no-any-return]
