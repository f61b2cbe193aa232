"""Byte layout of snapshot files.

::

    [8s magic b"AQJSNAP\\0"][u32 format version][u64 covers seq][u64 payload length]
    [u32 crc32] payload

The CRC covers the version, covers seq, length and payload, so a snapshot is trusted only if
every byte of it checks out.
"""

from __future__ import annotations

import struct
import zlib

from persistence.errors import CorruptJournalError

__all__ = ["SNAPSHOT_FORMAT_VERSION", "decode_snapshot", "encode_snapshot"]

SNAPSHOT_MAGIC = b"AQJSNAP\0"
SNAPSHOT_FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIQQI")
_CRC_FIELDS = struct.Struct("<IQQ")


def _crc(covers_seq: int, payload: bytes) -> int:
    fields = _CRC_FIELDS.pack(SNAPSHOT_FORMAT_VERSION, covers_seq, len(payload))
    return zlib.crc32(payload, zlib.crc32(fields))


def encode_snapshot(payload: bytes, covers_seq: int) -> bytes:
    header = _HEADER.pack(
        SNAPSHOT_MAGIC, SNAPSHOT_FORMAT_VERSION, covers_seq, len(payload), _crc(covers_seq, payload)
    )
    return header + payload


def decode_snapshot(data: bytes, file: str, covers_seq: int) -> bytes:
    """Return the payload, or raise CorruptJournalError if any byte is off."""

    def bad(offset: int, reason: str) -> CorruptJournalError:
        return CorruptJournalError(file, offset, covers_seq, f"bad snapshot: {reason}")

    if len(data) < _HEADER.size:
        raise bad(0, f"short header ({len(data)} of {_HEADER.size} bytes)")
    magic, version, header_seq, length, crc = _HEADER.unpack_from(data, 0)
    if magic != SNAPSHOT_MAGIC:
        raise bad(0, f"bad magic {magic!r}")
    if version != SNAPSHOT_FORMAT_VERSION:
        raise bad(8, f"unsupported format version {version}")
    if header_seq != covers_seq:
        raise bad(12, f"header says it covers seq {header_seq}, file name says {covers_seq}")
    if _HEADER.size + length != len(data):
        raise bad(20, f"length {length} does not match file size {len(data)}")
    payload = data[_HEADER.size :]
    if _crc(covers_seq, payload) != crc:
        raise bad(_HEADER.size, "crc mismatch")
    return payload
