"""The manifest: what the folder held when the journal last knew it for sure.

A file name can show a gap between two segments, but not that the newest segments were
deleted, nor that the last one was cut exactly at a frame boundary: what is left looks like
a shorter journal. The manifest is the evidence against that. The journal rewrites it
(temp file, fsync, rename, folder fsync) whenever it learns something durable: at open, at
a rollover, at a snapshot, at a clean close, and when the caller raises its high-water mark.

::

    [8s magic b"AQJMANI\\0"][u32 format version][u64 newest segment][u64 durable seq]
    [u64 high water][u32 crc32 of the 36 bytes before]

* newest segment: first seq of the newest segment when it was written; that segment and
  every one between the replay start and it must be there.
* durable seq: every record up to it had been fsynced (or was covered by a snapshot); the
  folder must still hold it, and damage at or before it is not a torn append.
* high water: a number the caller keeps beside its records (0 if it never set one), for
  what must never go backwards even when unsynced records are lost.

A folder without a manifest (written before there were manifests) is read as before, with
none of this evidence.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

from persistence.errors import CorruptJournalError
from persistence.filesystem import FileSystem
from persistence.layout import MANIFEST_NAME, MANIFEST_TMP_NAME
from persistence.live_read import read_bytes

__all__ = [
    "Manifest",
    "check_high_water",
    "decode_manifest",
    "encode_manifest",
    "read_manifest",
    "write_manifest",
]

MANIFEST_MAGIC = b"AQJMANI\0"
MANIFEST_FORMAT_VERSION = 1
_BODY = struct.Struct("<8sIQQQ")
_CRC = struct.Struct("<I")
MANIFEST_SIZE = _BODY.size + _CRC.size
MAX_HIGH_WATER = 2**64 - 1
_MOVE_ASIDE = "move it aside to open the folder without the manifest's evidence"


@dataclass(frozen=True, slots=True)
class Manifest:
    newest_segment: int
    durable_seq: int
    high_water: int


def check_high_water(value: int) -> None:
    """Refuse a high-water mark the manifest cannot hold, naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"high water must be an int, got {type(value).__name__} {value!r}")
    if not 0 <= value <= MAX_HIGH_WATER:
        raise ValueError(f"high water {value!r} must lie in [0, {MAX_HIGH_WATER}]")


def encode_manifest(manifest: Manifest) -> bytes:
    body = _BODY.pack(
        MANIFEST_MAGIC,
        MANIFEST_FORMAT_VERSION,
        manifest.newest_segment,
        manifest.durable_seq,
        manifest.high_water,
    )
    return body + _CRC.pack(zlib.crc32(body))


def decode_manifest(data: bytes, file: str) -> Manifest:
    """The manifest in `data`, or CorruptJournalError naming `file` if any byte is off."""

    def bad(offset: int, reason: str) -> CorruptJournalError:
        return CorruptJournalError(file, offset, 0, f"bad manifest: {reason}; {_MOVE_ASIDE}")

    if len(data) != MANIFEST_SIZE:
        raise bad(min(len(data), MANIFEST_SIZE), f"{len(data)} bytes, not {MANIFEST_SIZE}")
    magic, version, newest_segment, durable_seq, high_water = _BODY.unpack_from(data, 0)
    if magic != MANIFEST_MAGIC:
        raise bad(0, f"bad magic {magic!r}")
    (crc,) = _CRC.unpack_from(data, _BODY.size)
    if zlib.crc32(data[: _BODY.size]) != crc:
        raise bad(_BODY.size, "crc mismatch")
    if version != MANIFEST_FORMAT_VERSION:
        raise bad(8, f"unsupported format version {version}")
    return Manifest(newest_segment, durable_seq, high_water)


def read_manifest(fs: FileSystem, folder: str) -> Manifest | None:
    """The folder's manifest; None if it has none."""
    path = os.path.join(folder, MANIFEST_NAME)
    if not fs.exists(path):
        return None
    return decode_manifest(read_bytes(fs, path), path)


def write_manifest(fs: FileSystem, folder: str, manifest: Manifest) -> None:
    """Replace the manifest atomically and durably."""
    tmp = os.path.join(folder, MANIFEST_TMP_NAME)
    handle = fs.create(tmp)
    try:
        handle.write(encode_manifest(manifest))
        handle.fsync()
    finally:
        handle.close()
    fs.rename(tmp, os.path.join(folder, MANIFEST_NAME))
    fs.fsync_dir(folder)
