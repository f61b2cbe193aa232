"""Reading a journal folder back: which snapshot to trust, which frames follow it, and
whether the very end of the last segment is a torn append.

Everything here only reads. `plan_recovery` returns a plan; the journal applies its repairs
(cutting a torn tail, removing stale temp files) after taking the lock, and `verify` reports
the same plan without touching anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from persistence.errors import CorruptJournalError
from persistence.filesystem import FileSystem
from persistence.frames import scan_segment
from persistence.layout import (
    is_snapshot_tmp,
    parse_segment_name,
    parse_snapshot_name,
)
from persistence.snapshot_files import decode_snapshot

__all__ = ["Recovery", "RecoveryPlan", "SegmentState", "TornTail", "plan_recovery"]


@dataclass(frozen=True, slots=True)
class TornTail:
    """An interrupted append cut from the end of the last segment."""

    file: str
    offset: int
    length: int
    saved_to: str
    """Where the cut bytes were moved aside (empty in a read-only `verify` report)."""


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a journal folder holds: a snapshot and the records written after it."""

    snapshot: bytes | None
    snapshot_seq: int
    """Seq of the last record the snapshot covers; 0 without a snapshot."""
    records: list[tuple[int, bytes]]
    """(seq, payload) of every record after the snapshot, in seq order."""
    torn_tail: TornTail | None
    next_seq: int


@dataclass(slots=True)
class SegmentState:
    name: str
    first_seq: int
    last_seq: int
    """first_seq - 1 while the segment holds no frame."""
    size: int


@dataclass(slots=True)
class RecoveryPlan:
    snapshot: bytes | None
    snapshot_seq: int
    snapshot_seqs: list[int]
    """Every snapshot generation present, oldest first."""
    records: list[tuple[int, bytes]]
    segments: list[SegmentState]
    """Segments as they will be once the torn tail is cut, oldest first."""
    next_seq: int
    torn_segment: str | None = None
    torn_offset: int = 0
    torn_bytes: bytes = b""
    torn_removes_segment: bool = False
    """The torn bytes are the segment's own header: remove the file instead of truncating."""
    stale_tmp: list[str] = field(default_factory=list)
    corrupt_snapshot: str | None = None
    """A newest snapshot skipped for the previous generation; moved aside on open."""


@dataclass(slots=True)
class _Replay:
    records: list[tuple[int, bytes]]
    segments: list[SegmentState]
    next_seq: int
    torn_segment: str | None = None
    torn_offset: int = 0
    torn_bytes: bytes = b""
    torn_removes_segment: bool = False


def _replay_segments(
    fs: FileSystem, folder: str, segments: list[tuple[int, str]], snapshot_seq: int
) -> _Replay:
    """Replay every frame after `snapshot_seq`; raise on anything but a torn tail."""
    if not segments:
        return _Replay([], [], snapshot_seq + 1)
    # Segments wholly before the snapshot are not read: the snapshot replaces them, and they
    # go at the next snapshot. The replay starts in the newest segment that can hold S + 1.
    start = 0
    for i, (first_seq, _) in enumerate(segments):
        if first_seq <= snapshot_seq + 1:
            start = i
    states = [
        # Size 0: only segments the snapshot does not cover count towards size_since_snapshot.
        SegmentState(name, first_seq, segments[i + 1][0] - 1, 0)
        for i, (first_seq, name) in enumerate(segments[:start])
    ]
    records: list[tuple[int, bytes]] = []
    expected = segments[start][0]
    if expected > snapshot_seq + 1:
        raise CorruptJournalError(
            os.path.join(folder, segments[start][1]),
            0,
            snapshot_seq + 1,
            f"sequence gap: first segment starts at seq {expected}",
        )
    replay = _Replay(records, states, expected)
    for i in range(start, len(segments)):
        first_seq, name = segments[i]
        path = os.path.join(folder, name)
        is_last = i == len(segments) - 1
        if first_seq != expected:
            raise CorruptJournalError(
                path,
                0,
                max(expected, snapshot_seq + 1),
                f"sequence gap: segment starts at seq {first_seq}",
            )
        data = fs.read_bytes(path)
        scan = scan_segment(data, first_seq)
        records.extend(frame for frame in scan.frames if frame[0] > snapshot_seq)
        damage = scan.damage
        if damage is not None:
            if not (is_last and damage.tail_shaped):
                raise CorruptJournalError(path, damage.offset, damage.expected_seq, damage.reason)
            replay.torn_segment = name
            replay.torn_offset = damage.offset
            replay.torn_bytes = data[damage.offset :]
            replay.torn_removes_segment = scan.good_end == 0
        if not replay.torn_removes_segment:
            states.append(SegmentState(name, first_seq, scan.next_seq - 1, scan.good_end))
        expected = scan.next_seq
    replay.next_seq = max(expected, snapshot_seq + 1)
    return replay


def plan_recovery(fs: FileSystem, folder: str) -> RecoveryPlan:
    """Work out what the folder holds, raising CorruptJournalError on anything but a torn
    tail. Reads only."""
    segments: list[tuple[int, str]] = []
    snapshots: list[tuple[int, str]] = []
    stale_tmp: list[str] = []
    for name in fs.listdir(folder):
        if (seq := parse_segment_name(name)) is not None:
            segments.append((seq, name))
        elif (seq := parse_snapshot_name(name)) is not None:
            snapshots.append((seq, name))
        elif is_snapshot_tmp(name):
            stale_tmp.append(name)
    segments.sort()
    snapshots.sort()
    snapshot_seqs = [seq for seq, _ in snapshots]

    def plan(snapshot: bytes | None, snapshot_seq: int) -> RecoveryPlan:
        replay = _replay_segments(fs, folder, segments, snapshot_seq)
        return RecoveryPlan(
            snapshot=snapshot,
            snapshot_seq=snapshot_seq,
            snapshot_seqs=list(snapshot_seqs),
            records=replay.records,
            segments=replay.segments,
            next_seq=replay.next_seq,
            torn_segment=replay.torn_segment,
            torn_offset=replay.torn_offset,
            torn_bytes=replay.torn_bytes,
            torn_removes_segment=replay.torn_removes_segment,
            stale_tmp=stale_tmp,
        )

    if not snapshots:
        return plan(None, 0)
    newest_seq, newest_name = snapshots[-1]
    newest_path = os.path.join(folder, newest_name)
    try:
        payload = decode_snapshot(fs.read_bytes(newest_path), newest_path, newest_seq)
    except CorruptJournalError as newest_error:
        if len(snapshots) < 2:
            raise
        # The previous generation is a valid fallback only if every segment after it is
        # still here; otherwise falling back would silently lose the records in between.
        previous_seq, previous_name = snapshots[-2]
        previous_path = os.path.join(folder, previous_name)
        try:
            previous = decode_snapshot(fs.read_bytes(previous_path), previous_path, previous_seq)
            fallback = plan(previous, previous_seq)
        except CorruptJournalError as fallback_error:
            raise CorruptJournalError(
                newest_error.file,
                newest_error.offset,
                newest_error.expected_seq,
                f"{newest_error.reason}; previous generation {previous_name} is unusable: "
                f"{fallback_error}",
            ) from fallback_error
        fallback.corrupt_snapshot = newest_name
        fallback.snapshot_seqs = snapshot_seqs[:-1]
        return fallback
    return plan(payload, newest_seq)
