"""Reading a journal folder back: which snapshot to trust, which frames follow it, whether
the very end of the last segment is a torn append, and whether anything durable is missing.

Everything here only reads. `plan_recovery` returns a plan; the journal applies its repairs
(cutting a torn tail, moving damaged snapshots aside, removing stale temp files) after taking
the lock, and `verify` reports the same plan without touching anything.

Snapshots are tried newest first. One that does not check out is skipped for the generation
before it (and, before any snapshot was deleted, for none at all: a replay from seq 1); the
journal keeps the segments that generation needs until the next snapshot is durable, so the
fallback loses nothing. A snapshot that checks out is used even if its replay then fails:
the records after it are the same whichever snapshot comes before them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from persistence.errors import CorruptJournalError, MissingRecordsError
from persistence.filesystem import FileSystem
from persistence.frames import Damage, scan_segment
from persistence.layout import (
    MANIFEST_TMP_NAME,
    is_snapshot_tmp,
    parse_segment_name,
    parse_snapshot_name,
    segment_name,
)
from persistence.live_read import read_bytes
from persistence.manifest import Manifest, read_manifest
from persistence.snapshot_files import decode_snapshot

__all__ = ["Recovery", "RecoveryPlan", "SegmentState", "TornTail", "plan_recovery"]


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes cut from the end of the last segment: an append interrupted by a crash, or
    damage to the last record(s) that nothing shows were durable."""

    file: str
    offset: int
    length: int
    saved_to: str
    """Where the cut bytes were moved aside (empty in a read-only `verify` report)."""
    reason: str = ""
    """Why the bytes did not parse as a frame."""
    whole_frame: bool = False
    """The cut bytes begin with a frame of the full length its header gives that fails its
    CRC. An interrupted append can leave that, but so can damage to a record that was synced,
    and so acknowledged, under any fsync policy. False: the bytes stop short of a whole frame
    or are zeros, so no fsync of them completed (under "always", never acknowledged)."""


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
    high_water: int = 0
    """The caller's high-water mark as last set (`Journal.set_high_water`), 0 if never."""
    damaged_snapshots: tuple[str, ...] = ()
    """Why each newer snapshot was skipped for an older generation (they were moved aside)."""


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
    """Every snapshot generation present and usable, oldest first."""
    records: list[tuple[int, bytes]]
    segments: list[SegmentState]
    """Segments as they will be once the torn tail is cut, oldest first."""
    next_seq: int
    manifest: Manifest | None = None
    torn_segment: str | None = None
    torn_offset: int = 0
    torn_bytes: bytes = b""
    torn_reason: str = ""
    torn_whole_frame: bool = False
    torn_removes_segment: bool = False
    """The torn bytes are the segment's own header: remove the file instead of truncating."""
    stale_tmp: list[str] = field(default_factory=list)
    corrupt_snapshots: list[str] = field(default_factory=list)
    """Newer snapshots skipped for an older generation; moved aside on open."""
    snapshot_problems: list[str] = field(default_factory=list)
    """Why each of `corrupt_snapshots` was skipped."""

    @property
    def high_water(self) -> int:
        return 0 if self.manifest is None else self.manifest.high_water


@dataclass(slots=True)
class _Replay:
    records: list[tuple[int, bytes]]
    segments: list[SegmentState]
    next_seq: int
    torn: Damage | None = None
    torn_segment: str | None = None
    torn_bytes: bytes = b""
    torn_removes_segment: bool = False


def _durable(damage: Damage, first_seq: int, good_end: int, manifest: Manifest | None) -> bool:
    """Whether the manifest shows the damaged bytes had reached the disk: then they are not
    an interrupted append, whatever their shape."""
    if manifest is None:
        return False
    if good_end == 0 and first_seq <= manifest.newest_segment:
        return True  # a segment's header is fsynced before the manifest names the segment
    return damage.expected_seq <= manifest.durable_seq


def _replay_segments(
    fs: FileSystem,
    folder: str,
    segments: list[tuple[int, str]],
    snapshot_seq: int,
    manifest: Manifest | None,
) -> _Replay:
    """Replay every frame after `snapshot_seq`; raise on anything but a torn tail."""
    present = {first_seq for first_seq, _ in segments}
    if manifest is not None and manifest.newest_segment not in present:
        newest = manifest.newest_segment
        raise MissingRecordsError(
            os.path.join(folder, segment_name(newest)),
            0,
            max(newest, snapshot_seq + 1),
            f"segment missing: the manifest names it as the newest, holding seq {newest} on",
        )
    if not segments:
        if snapshot_seq == 0:
            return _Replay([], [], 1)
        raise MissingRecordsError(
            os.path.join(folder, segment_name(snapshot_seq + 1)),
            0,
            snapshot_seq + 1,
            "segment missing: no segment holds the records after the snapshot",
        )
    # Segments wholly before the snapshot are not read: the snapshot replaces them, and they
    # stay only as the previous generation's fallback. The replay starts in the newest
    # segment that can hold S + 1.
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
        raise MissingRecordsError(
            os.path.join(folder, segments[start][1]),
            0,
            snapshot_seq + 1,
            f"sequence gap: first segment starts at seq {expected}",
        )
    replay = _Replay(records, states, expected)
    path = ""
    good_end = 0
    for i in range(start, len(segments)):
        first_seq, name = segments[i]
        path = os.path.join(folder, name)
        is_last = i == len(segments) - 1
        if first_seq != expected:
            raise MissingRecordsError(
                path,
                0,
                max(expected, snapshot_seq + 1),
                f"sequence gap: segment starts at seq {first_seq}",
            )
        data = read_bytes(fs, path)
        scan = scan_segment(data, first_seq)
        records.extend(frame for frame in scan.frames if frame[0] > snapshot_seq)
        damage = scan.damage
        good_end = scan.good_end
        if damage is not None:
            if not (is_last and damage.tail_shaped):
                raise CorruptJournalError(path, damage.offset, damage.expected_seq, damage.reason)
            if _durable(damage, first_seq, scan.good_end, manifest):
                raise CorruptJournalError(
                    path,
                    damage.offset,
                    damage.expected_seq,
                    f"{damage.reason} (at the end of the last segment, but the manifest shows "
                    "these bytes had reached the disk: damage, not an interrupted append)",
                )
            replay.torn = damage
            replay.torn_segment = name
            replay.torn_bytes = data[damage.offset :]
            replay.torn_removes_segment = scan.good_end == 0
        if not replay.torn_removes_segment:
            states.append(SegmentState(name, first_seq, scan.next_seq - 1, scan.good_end))
        expected = scan.next_seq
    last_seq = expected - 1
    if last_seq < snapshot_seq:
        raise MissingRecordsError(
            path,
            good_end,
            last_seq + 1,
            f"segments end at seq {last_seq}, before the snapshot's seq {snapshot_seq}: the "
            "segment that followed the snapshot is missing",
        )
    if manifest is not None and last_seq < manifest.durable_seq:
        raise MissingRecordsError(
            path,
            good_end,
            last_seq + 1,
            f"records missing: the segments end at seq {last_seq}, but the manifest says seq "
            f"{manifest.durable_seq} was durable (the end was cut or deleted)",
        )
    replay.next_seq = expected
    return replay


@dataclass(slots=True)
class _Listing:
    segments: list[tuple[int, str]] = field(default_factory=list)
    snapshots: list[tuple[int, str]] = field(default_factory=list)
    stale_tmp: list[str] = field(default_factory=list)


def _list(fs: FileSystem, folder: str) -> _Listing:
    listing = _Listing()
    for name in fs.listdir(folder):
        if (seq := parse_segment_name(name)) is not None:
            listing.segments.append((seq, name))
        elif (seq := parse_snapshot_name(name)) is not None:
            listing.snapshots.append((seq, name))
        elif is_snapshot_tmp(name) or name == MANIFEST_TMP_NAME:
            listing.stale_tmp.append(name)
    listing.segments.sort()
    listing.snapshots.sort()
    return listing


def plan_recovery(fs: FileSystem, folder: str) -> RecoveryPlan:
    """Work out what the folder holds, raising CorruptJournalError (MissingRecordsError when
    durable records are gone) on anything but a torn tail. Reads only."""
    listing = _list(fs, folder)
    manifest = read_manifest(fs, folder)
    skipped: list[tuple[str, CorruptJournalError]] = []
    candidates: list[tuple[int, str] | None] = [*reversed(listing.snapshots), None]
    for candidate in candidates:
        snapshot: bytes | None = None
        snapshot_seq = 0
        if candidate is not None:
            snapshot_seq, name = candidate
            path = os.path.join(folder, name)
            try:
                snapshot = decode_snapshot(read_bytes(fs, path), path, snapshot_seq)
            except CorruptJournalError as exc:
                skipped.append((name, exc))
                continue
        try:
            replay = _replay_segments(fs, folder, listing.segments, snapshot_seq, manifest)
        except CorruptJournalError as exc:
            if not skipped:
                raise
            first = skipped[0][1]
            where = (
                "the replay from seq 1"
                if candidate is None
                else f"previous generation {candidate[1]}"
            )
            raise type(first)(
                first.file,
                first.offset,
                first.expected_seq,
                f"{first.reason}; {where} is unusable: {exc}",
            ) from exc
        torn = replay.torn
        return RecoveryPlan(
            snapshot=snapshot,
            snapshot_seq=snapshot_seq,
            snapshot_seqs=[seq for seq, _ in listing.snapshots if seq <= snapshot_seq],
            records=replay.records,
            segments=replay.segments,
            next_seq=replay.next_seq,
            manifest=manifest,
            torn_segment=replay.torn_segment,
            torn_offset=0 if torn is None else torn.offset,
            torn_bytes=replay.torn_bytes,
            torn_reason="" if torn is None else torn.reason,
            torn_whole_frame=torn is not None and torn.whole_frame,
            torn_removes_segment=replay.torn_removes_segment,
            stale_tmp=listing.stale_tmp,
            corrupt_snapshots=[name for name, _ in skipped],
            snapshot_problems=[str(exc) for _, exc in skipped],
        )
    raise AssertionError("the last candidate, no snapshot, always returns or raises")
