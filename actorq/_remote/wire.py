"""The wire: length-prefixed orjson frames, and the codec of the values they carry.

A frame is a 4-byte big-endian length and that many bytes of JSON (orjson). A message is a
JSON list whose first item names its kind (see `host` for the kinds). Values that JSON has
no word for travel tagged, as a list whose first item is a one-letter tag:

========  =========================================================
``T``     a tuple: ``["T", item, ...]``
``L``     a list
``S``     a frozenset
``D``     a dict: ``["D", key, value, key, value, ...]``
``B``     bytes that are UTF-8 text (a job's data, its return value): ``["B", "text"]``
``Y``     other bytes, in base64
``F``     a float JSON cannot spell: ``["F", "inf"]``
``E``     an enum member: ``["E", class name, value]``
``A``     an attrs instance of an allowed class: ``["A", class name, field, ...]``
``M``     a list repeating instances: ``["M", [distinct, ...], [index, ...]]``
``K``     one of the core's constants (`INTERNED`): ``["K", index]``
========  =========================================================

Only the classes named in `CLASSES` (the core's commands, records and events) can be made
from a frame, and only by their own constructor: a frame can never name a function to call
or a class to import, as pickle would let it.
"""

from __future__ import annotations

import base64
import enum
import math
import struct
import types
import typing
from collections.abc import Callable
from typing import Any, Final

import anyio
import attrs
import orjson
from anyio.abc import ByteReceiveStream

from .. import _exceptions as errors
from .._actors.subscription import Lagged
from .._core import commands, events, records, schedulers, states

#: The protocol version: a client of another version is refused with a clear message.
PROTOCOL: Final = 2
#: The largest frame either side accepts (a bulk add of 64 MiB of data is the limit).
MAX_FRAME: Final = 64 * 1024 * 1024
#: The largest first frame: before a client is authenticated it may send no more than this.
MAX_HELLO: Final = 4096

_LENGTH: Final = struct.Struct(">I")


class ProtocolError(errors.ActorqError):
    """The peer sent something that is not this protocol: the connection is closed."""


def _allowed() -> dict[str, type[Any]]:
    found: dict[str, type[Any]] = {"Lagged": Lagged}
    for module in (commands, records, events, schedulers, states):
        for name in dir(module):
            value = getattr(module, name)
            ours = isinstance(value, type) and value.__module__ == module.__name__
            if ours and (attrs.has(value) or issubclass(value, enum.Enum)):
                found[name] = value
    return found


#: The classes a frame may carry, by name.
CLASSES: Final = _allowed()
#: The errors a reply may carry, by name; any other arrives as `RemoteError`.
ERRORS: Final = {
    name: value
    for name in dir(errors)
    if isinstance(value := getattr(errors, name), type) and issubclass(value, Exception)
}


class RemoteError(errors.ActorqError):
    """An error the host met that is none of actorq's own (a bug there): its message."""


# ---------------------------------------------------------------------------- values


def encode_value(value: Any) -> Any:
    """`value` as something orjson writes and `decode_value` reads back as it was."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else ["F", repr(value)]
    if kind is bytes:
        return _bytes(value)
    if kind is tuple:
        return ["T", *map(encode_value, value)]
    if kind is list:
        return _encode_list(value)
    if kind is frozenset or kind is set:
        return ["S", *map(encode_value, value)]
    if kind is dict:
        out: list[Any] = ["D"]
        for key, item in value.items():
            out.append(encode_value(key))
            out.append(encode_value(item))
        return out
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        return encoder(value)
    if isinstance(value, enum.Enum) and CLASSES.get(kind.__name__) is kind:
        return ["E", kind.__name__, value.value]
    raise TypeError(f"{value!r} cannot travel to another process")


def _encode_list(items: list[Any]) -> list[Any]:
    """A list; one whose items repeat the same instances (a bulk add shares one spec among
    jobs of the same options) as ``["M", [distinct, ...], [index, ...]]``."""
    if not items or type(items[0]) not in _ENCODERS:
        return ["L", *map(encode_value, items)]
    seen: dict[int, int] = {}
    distinct: list[Any] = []
    order: list[int] = []
    for item in items:
        at = seen.get(id(item))
        if at is None:
            at = seen[id(item)] = len(distinct)
            distinct.append(item)
        order.append(at)
    encoded = list(map(encode_value, distinct))
    if len(distinct) == len(items):
        return ["L", *encoded]
    return ["M", encoded, order]


def _plain(hint: Any) -> bool:
    """Whether values of `hint` are JSON as they are (str, int, bool, None)."""
    if hint in (str, int, bool, type(None), None):
        return True
    return _union(hint) and all(_plain(arm) for arm in typing.get_args(hint))


def _union(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return origin is typing.Union or origin is types.UnionType


def _arms(hint: Any) -> set[Any]:
    return set(typing.get_args(hint)) if _union(hint) else {hint}


def _field_codec(hint: Any, get: str, raw: str) -> tuple[str, str]:
    """The expressions that encode attribute `get` and decode item `raw` of a field of
    type `hint`: inline for the kinds every job has (plain values, times, bytes, tuples of
    plain values, states), the generic codec for the rest."""
    arms = _arms(hint) - {type(None)}
    if _plain(hint):
        return get, raw
    if arms <= {float, int}:  # a time or a duration: JSON unless infinite or NaN
        return (
            f"(_v if (_v := {get}) is None or -1e308 < _v < 1e308 else _enc(_v))",
            f"(_x if type(_x := {raw}) is not list else _dec(_x))",
        )
    if arms == {bytes}:
        return (
            f"(None if (_v := {get}) is None else _bytes(_v))",
            f"(_x[1].encode() if type(_x := {raw}) is list and len(_x) == 2 and _x[0] == 'B'"
            f" and type(_x[1]) is str else _dec(_x))",
        )
    tuple_of = typing.get_origin(hint) is tuple and hint.__args__[1:] == (Ellipsis,)
    if tuple_of and _plain(hint.__args__[0]):
        return (
            f"['T', *{get}]",
            f"(tuple(_x[1:]) if type(_x := {raw}) is list and _x and _x[0] == 'T' else _dec(_x))",
        )
    if (
        len(arms) == 1
        and isinstance(next(iter(arms)), type)
        and issubclass(cls := next(iter(arms)), enum.Enum)
    ):
        return (
            f"(None if (_v := {get}) is None else ['E', {cls.__name__!r}, _v.value])",
            f"(_M[{cls.__name__!r}][_x[2]] if type(_x := {raw}) is list and len(_x) == 3"
            f" and _x[0] == 'E' and _x[1] == {cls.__name__!r} else _dec(_x))",
        )
    if any(type(value) in arms for value in INTERNED):
        return (
            f"(_K.get(_v := {get}) or _enc(_v))",
            f"(_I[_x[1]] if type(_x := {raw}) is list and len(_x) == 2 and _x[0] == 'K'"
            f" and type(_x[1]) is int and 0 <= _x[1] < {len(INTERNED)} else _dec(_x))",
        )
    return f"_enc({get})", f"_dec({raw})"


#: Instances most jobs share (retention kept forever, removed at once): sent as an index.
INTERNED: Final = (records.KEEP_ALL, records.REMOVE_AT_ONCE)
_INTERNED_BY_VALUE: Final = {value: ["K", at] for at, value in enumerate(INTERNED)}
_MEMBERS: Final = {
    name: {member.value: member for member in cls}
    for name, cls in CLASSES.items()
    if issubclass(cls, enum.Enum)
}


def _bytes(value: bytes) -> list[str]:
    try:
        return ["B", value.decode()]
    except UnicodeDecodeError:
        return ["Y", base64.b64encode(value).decode()]


def _codec_space() -> dict[str, Any]:
    """The names the generated codecs (a record's, a delta's) read."""
    return {
        "_enc": encode_value,
        "_dec": decode_value,
        "_bytes": _bytes,
        "_K": _INTERNED_BY_VALUE,
        "_M": _MEMBERS,
        "_I": INTERNED,
    }


def _codec(
    cls: type[Any],
) -> tuple[Callable[[Any], Any], Callable[[list[Any]], Any], Callable[[Any, list[Any]], None]]:
    """The encoder and decoder of an attrs class, generated once (as attrs generates its
    own methods) from its fields' types, and a decoder into an instance there already. A
    decoded value's types are checked by the host (`checks`), not here: a hostile value
    gets through the decoder only to be refused."""
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in attrs.fields(cls) if f.init]
    name = cls.__name__
    codecs = [_field_codec(hints[f], f"o.{f}", f"v[{i}]") for i, f in enumerate(fields)]
    enc = ", ".join(e for e, _ in codecs)
    dec = ", ".join(d for _, d in codecs)
    source = (
        f"def encode(o):\n    return ['A', {name!r}, {enc}]\n"
        f"def decode(v):\n"
        f"    if len(v) != {len(fields)}:\n"
        f"        raise ProtocolError('{name} takes {len(fields)} fields, not %d' % len(v))\n"
        f"    return cls({dec})\n"
        f"def decode_into(o, v):\n"
        f"    if len(v) != {len(fields)}:\n"
        f"        raise ProtocolError('{name} takes {len(fields)} fields, not %d' % len(v))\n"
        + "".join(f"    o.{f} = {d}\n" for f, (_, d) in zip(fields, codecs, strict=True))
    )
    space = {**_codec_space(), "cls": cls, "ProtocolError": ProtocolError}
    exec(compile(source, f"<actorq wire codec of {name}>", "exec"), space)
    return space["encode"], space["decode"], space["decode_into"]


def _tuple(items: list[Any]) -> Any:
    return tuple(map(decode_value, items))


def _list(items: list[Any]) -> Any:
    return list(map(decode_value, items))


def _shared(items: list[Any]) -> Any:
    distinct, order = items
    values = list(map(decode_value, distinct))
    return [values[i] for i in order]


def _set(items: list[Any]) -> Any:
    return frozenset(map(decode_value, items))


def _dict(items: list[Any]) -> Any:
    if len(items) % 2:
        raise ProtocolError("a dict needs as many values as keys")
    it = iter(map(decode_value, items))
    return dict(zip(it, it, strict=True))


def _text(items: list[Any]) -> Any:
    (text,) = items
    return str.encode(text)


def _b64(items: list[Any]) -> Any:
    (text,) = items
    return base64.b64decode(text, validate=True)


def _float(items: list[Any]) -> Any:
    (text,) = items
    if text not in ("inf", "-inf", "nan"):
        raise ProtocolError(f"{text!r} is not a float JSON lacks")
    return float(text)


def _enum(items: list[Any]) -> Any:
    name, value = items
    return _MEMBERS[name][value]  # a KeyError is a ProtocolError (`decode_value`)


def _interned(items: list[Any]) -> Any:
    (at,) = items
    return INTERNED[at]


def _attrs(items: list[Any]) -> Any:
    decoder = _DECODERS.get(items[0])
    if decoder is None:
        raise ProtocolError(f"{items[0]!r} is not a class the protocol carries")
    return decoder(items[1:])


_TAGS: Final[dict[str, Callable[[list[Any]], Any]]] = {
    "T": _tuple,
    "L": _list,
    "M": _shared,
    "S": _set,
    "D": _dict,
    "B": _text,
    "Y": _b64,
    "F": _float,
    "E": _enum,
    "K": _interned,
    "A": _attrs,
}


def decode_value(raw: Any) -> Any:
    """The value `encode_value` wrote (ProtocolError: it is not one)."""
    if type(raw) is not list:
        if type(raw) is dict:
            raise ProtocolError("a bare JSON object is not a value")
        return raw
    if not raw or type(raw[0]) is not str or raw[0] not in _TAGS:
        raise ProtocolError("an untagged list is not a value")
    try:
        return _TAGS[raw[0]](raw[1:])
    except ProtocolError:
        raise
    except (TypeError, ValueError, KeyError, IndexError) as exc:  # a tagged value, misshapen
        raise ProtocolError(f"malformed {raw[0]} value: {exc}") from exc


_CODECS: Final = {cls: _codec(cls) for cls in CLASSES.values() if attrs.has(cls)}
_ENCODERS: Final = {cls: codec[0] for cls, codec in _CODECS.items()}
_DECODERS: Final = {cls.__name__: codec[1] for cls, codec in _CODECS.items()}


_JOB_HINTS: Final = typing.get_type_hints(records.JobRecord)
_JOB_INTO: Final = _CODECS[records.JobRecord][2]


def decode_job_into(rec: Any, raw: list[Any]) -> None:
    """Set on `rec` every field of the job record `raw` encodes (``["A", "JobRecord",
    ...]``), as `decode_value` would have built it."""
    try:
        _JOB_INTO(rec, raw[2:])
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise ProtocolError(f"malformed JobRecord value: {exc}") from exc


#: Most deltas set one of a few sets of fields (those of a transition): each set's
#: encoder and decoder is generated once, as the record's codec is; past this many sets
#: (a host that invents them), the rest go field by field.
_DELTA_SHAPES: Final = 256
_delta_encoders: dict[tuple[str, ...], Callable[[int, dict[str, Any]], list[Any]]] = {}
_delta_decoders: dict[tuple[str, ...], Callable[[Any, list[Any]], None]] = {}


def _delta_codec(names: tuple[str, ...]) -> tuple[Any, Any]:
    """The generated encoder and decoder of a delta setting `names` (KeyError: a name that
    is no field of a job)."""
    items = []
    sets = []
    for at, name in enumerate(names):
        if type(name) is not str or not name.isidentifier():
            raise KeyError(name)
        enc, dec = _field_codec(_JOB_HINTS[name], f"d[{name!r}]", f"r[{2 * at + 2}]")
        items.append(f"{name!r}, {enc}")
        sets.append(f"    o.{name} = {dec}\n")
    source = (
        f"def encode(i, d):\n    return [i, {', '.join(items)}]\n"
        f"def decode(o, r):\n{''.join(sets) or '    pass'}\n"
    )
    space = _codec_space()
    exec(compile(source, "<actorq wire codec of a job's delta>", "exec"), space)
    return space["encode"], space["decode"]


def encode_fields(job_id: int, fields: dict[str, Any]) -> list[Any]:
    """Some fields of job `job_id`, by name, as ``[id, name, value, ...]``."""
    names = tuple(fields)
    encode = _delta_encoders.get(names)
    if encode is None:
        encode, _decode = _delta_codec(names)
        if len(_delta_encoders) < _DELTA_SHAPES:
            _delta_encoders[names] = encode
    out: list[Any] = encode(job_id, fields)
    return out


def decode_fields_into(rec: Any, raw: list[Any]) -> None:
    """Set on `rec` the fields `encode_fields` wrote in `raw`."""
    if len(raw) % 2 != 1:
        raise ProtocolError("a job's delta is its id, then names and values")
    names = tuple(raw[1::2])
    try:
        decode = _delta_decoders.get(names)
        if decode is None:
            _encode, decode = _delta_codec(names)
            if len(_delta_decoders) < _DELTA_SHAPES:
                _delta_decoders[names] = decode
        decode(rec, raw)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ProtocolError(f"a job's delta is not fields of a job: {exc!r}") from None


# ---------------------------------------------------------------------------- errors


def encode_error(exc: BaseException) -> list[Any]:
    """An error as ``[class name, message, attributes]`` for a reply."""
    name = type(exc).__name__
    if ERRORS.get(name) is not type(exc):
        return ["RemoteError", [f"{name}: {exc}"], {}]
    fields = {}
    for key, value in vars(exc).items():
        try:
            fields[key] = encode_value(value)
        except TypeError:
            fields[key] = repr(value)
    simple = all(type(a) in (str, int, float, bool, type(None)) for a in exc.args)
    return [name, [encode_value(a) for a in exc.args] if simple else [str(exc)], fields]


def decode_error(raw: Any) -> BaseException:
    """The error `encode_error` wrote, rebuilt without calling its constructor."""
    try:
        name, args, fields = raw
        cls = ERRORS.get(name, RemoteError) if name != "RemoteError" else RemoteError
        exc: BaseException = cls.__new__(cls)
        exc.args = tuple(decode_value(a) for a in args)
        for key, value in fields.items():
            setattr(exc, key, decode_value(value))
    except (TypeError, ValueError, AttributeError) as exc2:
        raise ProtocolError(f"malformed error: {exc2}") from exc2
    return exc


# ---------------------------------------------------------------------------- frames


def frame(message: list[Any]) -> bytes:
    """One message as a frame (the message's values already encoded)."""
    body = orjson.dumps(message)
    return _LENGTH.pack(len(body)) + body


class FrameReader:
    """Reads whole messages off a byte stream, refusing frames over `limit` bytes.

    It asks the stream for up to 64 KiB at a time and hands back every whole message that
    came: a peer with many calls in flight sends many frames per read, and each costs one
    slice here rather than a read of its own (anyio's `BufferedByteReceiveStream` reads only
    the bytes still missing, a system call per frame)."""

    def __init__(self, stream: ByteReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def read(self, limit: int = MAX_FRAME, most: int = -1) -> list[list[Any]]:
        """The next messages, at least one and at most `most` (anyio.EndOfStream at a
        clean end between frames; ProtocolError for anything that is not this protocol)."""
        buffer = self._buffer
        while True:
            messages = self._parse(limit, most)
            if messages:
                return messages
            try:
                chunk = await self._stream.receive(65536)
            except anyio.EndOfStream:
                if buffer:
                    raise ProtocolError("the stream ended inside a frame") from None
                raise
            buffer += chunk

    def _parse(self, limit: int, most: int) -> list[list[Any]]:
        buffer = self._buffer
        out: list[list[Any]] = []
        at = 0
        end = len(buffer)
        while end - at >= 4 and len(out) != most:
            (size,) = _LENGTH.unpack_from(buffer, at)
            if size > limit:
                raise ProtocolError(f"a frame of {size} bytes is over the limit of {limit}")
            if end - at - 4 < size:
                break
            try:
                message = orjson.loads(memoryview(buffer)[at + 4 : at + 4 + size])
            except orjson.JSONDecodeError as exc:
                raise ProtocolError(f"a frame is not JSON: {exc}") from exc
            if type(message) is not list or not message or type(message[0]) is not str:
                raise ProtocolError("a message is a list that starts with its kind")
            out.append(message)
            at += 4 + size
        if at:
            del buffer[:at]
        return out
