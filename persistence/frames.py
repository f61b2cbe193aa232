"""Byte layout of segment files and the frames inside them, and a read-only segment scanner.

Segment file::

    [8s magic b"AQJSEG\\0\\0"][u32 format version][u64 first seq][u32 crc32 of the 20 bytes before]
    frame, frame, ...

Frame (little-endian)::

    [u32 payload length][u32 crc32][u64 seq] payload

The frame CRC covers the length, the seq and the payload, so a flipped header bit is caught
as surely as a flipped payload bit.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "FRAME_HEADER",
    "SEGMENT_FORMAT_VERSION",
    "SEGMENT_HEADER",
    "Damage",
    "SegmentScan",
    "encode_frame",
    "encode_segment_header",
    "scan_segment",
]

SEGMENT_MAGIC = b"AQJSEG\0\0"
SEGMENT_FORMAT_VERSION = 1
_SEGMENT_HEADER = struct.Struct("<8sIQI")
SEGMENT_HEADER = _SEGMENT_HEADER.size
_FRAME_HEADER = struct.Struct("<IIQ")
FRAME_HEADER = _FRAME_HEADER.size
_LENGTH_SEQ = struct.Struct("<IQ")
MAX_PAYLOAD = 0xFFFF_FFFF


def _frame_crc(length: int, seq: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(_LENGTH_SEQ.pack(length, seq)))


def encode_frame(seq: int, payload: bytes) -> bytes:
    length = len(payload)
    return _FRAME_HEADER.pack(length, _frame_crc(length, seq, payload), seq) + payload


def encode_segment_header(first_seq: int) -> bytes:
    head = struct.pack("<8sIQ", SEGMENT_MAGIC, SEGMENT_FORMAT_VERSION, first_seq)
    return head + struct.pack("<I", zlib.crc32(head))


@dataclass(frozen=True, slots=True)
class Damage:
    """Where and why a segment stopped parsing.

    `tail_shaped` means the damage looks like an interrupted append: it runs to the end of the
    file (short header, short payload, a bad CRC on a frame ending at EOF or followed only by
    zero bytes, or nothing but zero bytes, which some file systems leave where a crash cut
    an append short) and no valid frame follows it. Only such damage, in the last segment,
    may be cut as a torn tail. `whole_frame`: the damaged bytes are a frame of the full length
    its header gives that fails its CRC, rather than one whose bytes stop short; an fsync
    that completed leaves no short frame, but it can leave a whole one that rotted later.
    """

    offset: int
    expected_seq: int
    reason: str
    tail_shaped: bool
    whole_frame: bool = False


@dataclass(frozen=True, slots=True)
class SegmentScan:
    frames: list[tuple[int, bytes]]
    good_end: int
    """Byte offset just past the last good frame (0 if the segment header itself is bad)."""
    next_seq: int
    damage: Damage | None


def _valid_frame_follows(data: bytes, start: int, expected_seq: int) -> bool:
    """Whether any intact frame starts after `start`: if one does, the bad bytes before it were
    not the last thing written, so they are not a torn append but damage to acknowledged data."""
    end = len(data)
    highest_plausible_seq = expected_seq + (end - start) // FRAME_HEADER + 1
    unpack = _FRAME_HEADER.unpack_from
    view = memoryview(data)
    for pos in range(start, end - FRAME_HEADER + 1):
        length, crc, seq = unpack(data, pos)
        if not expected_seq <= seq <= highest_plausible_seq:
            continue
        body = pos + FRAME_HEADER
        if body + length > end:
            continue
        if _frame_crc(length, seq, view[body : body + length]) == crc:
            return True
    return False


def _zeros_from(data: bytes, start: int) -> bool:
    """Whether every byte from `start` to the end is zero (and there is at least one)."""
    return start < len(data) and data.count(0, start) == len(data) - start


def _check_segment_header(data: bytes, first_seq: int) -> Damage | None:
    if _zeros_from(data, 0):
        return Damage(0, first_seq, f"zero-filled segment ({len(data)} bytes)", True)
    if len(data) < SEGMENT_HEADER:
        return Damage(
            0, first_seq, f"short segment header ({len(data)} of {SEGMENT_HEADER} bytes)", True
        )
    magic, version, header_seq, crc = _SEGMENT_HEADER.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        return Damage(0, first_seq, f"bad segment magic {magic!r}", False)
    if zlib.crc32(data[: SEGMENT_HEADER - 4]) != crc:
        return Damage(0, first_seq, "segment header crc mismatch", False)
    if version != SEGMENT_FORMAT_VERSION:
        return Damage(0, first_seq, f"unsupported segment format version {version}", False)
    if header_seq != first_seq:
        return Damage(
            0,
            first_seq,
            f"segment header says first seq {header_seq}, file name says {first_seq}",
            False,
        )
    return None


def scan_segment(data: bytes, first_seq: int) -> SegmentScan:
    """Parse one segment's bytes; never raises on bad data, reports it in `damage`."""
    header_damage = _check_segment_header(data, first_seq)
    if header_damage is not None:
        return SegmentScan([], 0, first_seq, header_damage)
    frames: list[tuple[int, bytes]] = []
    view = memoryview(data)
    end = len(data)
    pos = SEGMENT_HEADER
    expected = first_seq
    damage: Damage | None = None
    while pos < end:
        if end - pos < FRAME_HEADER:
            damage = Damage(
                pos, expected, f"short frame header ({end - pos} of {FRAME_HEADER} bytes)", True
            )
            break
        length, crc, seq = _FRAME_HEADER.unpack_from(data, pos)
        body = pos + FRAME_HEADER
        if body + length > end:
            reason = f"frame runs past end of file (length {length}, {end - body} bytes left)"
            tail = not _valid_frame_follows(data, pos + 1, expected)
            damage = Damage(pos, expected, reason, tail)
            break
        if _frame_crc(length, seq, view[body : body + length]) != crc:
            frame_end = body + length
            runs_to_eof = frame_end == end or _zeros_from(data, frame_end)
            tail = runs_to_eof and not _valid_frame_follows(data, pos + 1, expected)
            damage = Damage(pos, expected, "frame crc mismatch", tail, whole_frame=True)
            break
        if seq != expected:
            damage = Damage(pos, expected, f"sequence gap: frame has seq {seq}", False)
            break
        frames.append((seq, bytes(view[body : body + length])))
        expected += 1
        pos = body + length
    if damage is not None and _zeros_from(data, pos):
        damage = Damage(pos, expected, f"zero-filled tail ({end - pos} bytes)", True)
    return SegmentScan(frames, pos, expected, damage)
