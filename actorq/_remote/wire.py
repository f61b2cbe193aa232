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
PROTOCOL: Final = 1
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
#: The fields of each attrs class, in constructor order (only those `init` takes).
_FIELDS: Final = {
    name: tuple(f.name for f in attrs.fields(cls) if f.init)
    for name, cls in CLASSES.items()
    if attrs.has(cls)
}

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
        try:
            return ["B", value.decode()]
        except UnicodeDecodeError:
            return ["Y", base64.b64encode(value).decode()]
    if kind is tuple:
        return ["T", *map(encode_value, value)]
    if kind is list:
        return ["L", *map(encode_value, value)]
    if kind is frozenset or kind is set:
        return ["S", *map(encode_value, value)]
    if kind is dict:
        out: list[Any] = ["D"]
        for key, item in value.items():
            out.append(encode_value(key))
            out.append(encode_value(item))
        return out
    if isinstance(value, enum.Enum):
        return ["E", kind.__name__, value.value]
    name = kind.__name__
    fields = _FIELDS.get(name)
    if fields is None or CLASSES[name] is not kind:
        raise TypeError(f"{value!r} cannot travel to another process")
    return ["A", name, *(encode_value(getattr(value, f)) for f in fields)]


def _tuple(items: list[Any]) -> Any:
    return tuple(map(decode_value, items))


def _list(items: list[Any]) -> Any:
    return list(map(decode_value, items))


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
    cls = CLASSES.get(name)
    if cls is None or not issubclass(cls, enum.Enum):
        raise ProtocolError(f"{name!r} is not an enum the protocol carries")
    return cls(value)


def _attrs(items: list[Any]) -> Any:
    name, *values = items
    fields = _FIELDS.get(name)
    if fields is None:
        raise ProtocolError(f"{name!r} is not a class the protocol carries")
    if len(values) != len(fields):
        raise ProtocolError(f"{name} takes {len(fields)} fields, not {len(values)}")
    return CLASSES[name](*map(decode_value, values))


_TAGS: Final[dict[str, Callable[[list[Any]], Any]]] = {
    "T": _tuple,
    "L": _list,
    "S": _set,
    "D": _dict,
    "B": _text,
    "Y": _b64,
    "F": _float,
    "E": _enum,
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
    except (TypeError, ValueError, KeyError) as exc:  # a tagged value of the wrong shape
        raise ProtocolError(f"malformed {raw[0]} value: {exc}") from exc


# ---------------------------------------------------------------------------- errors


def encode_error(exc: BaseException) -> list[Any]:
    """An error as ``[class name, message, attributes]`` for a reply."""
    name = type(exc).__name__
    if ERRORS.get(name) is not type(exc):
        return ["RemoteError", f"{name}: {exc}", {}]
    fields = {}
    for key, value in vars(exc).items():
        try:
            fields[key] = encode_value(value)
        except TypeError:
            fields[key] = repr(value)
    return [name, [encode_value(a) for a in exc.args] if _plain(exc.args) else [str(exc)], fields]


def _plain(args: tuple[Any, ...]) -> bool:
    return all(type(a) in (str, int, float, bool, type(None)) for a in args)


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
