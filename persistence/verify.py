"""Read-only inspection of a journal folder, safe while a live runtime holds it.

`verify` is fsck: it checks the manifest, every snapshot and every frame of every segment,
and whether the segments run without a gap, and reports all it finds instead of stopping at
the first problem. `iter_frames` feeds a dump tool. Neither takes the lock nor writes a
byte; both read again while a live journal changes the folder under them
(`persistence.live_read`), so a tail the live writer is appending may show as a torn tail;
that is expected, and recovery would only cut it after a crash.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from persistence.errors import CorruptJournalError, JournalFolderError, MissingRecordsError
from persistence.filesystem import FileSystem, OsFileSystem
from persistence.frames import scan_segment
from persistence.layout import parse_segment_name, parse_snapshot_name
from persistence.live_read import read_bytes, read_consistently
from persistence.manifest import read_manifest
from persistence.recovery import RecoveryPlan, TornTail, plan_recovery
from persistence.snapshot_files import decode_snapshot

__all__ = ["VerifyReport", "iter_frames", "verify"]


@dataclass(slots=True)
class VerifyReport:
    ok: bool
    """True when nothing is damaged (a torn tail alone still counts as ok: recovery cuts it)."""
    frames: int
    """Intact frames found across all segments."""
    segments: int
    snapshot_seq: int
    """Seq the snapshot recovery would use covers (0 if none)."""
    problems: list[str] = field(default_factory=list)
    torn_tail: TornTail | None = None
    """The tail recovery would cut; `saved_to` is empty because nothing was moved."""


def _segments(fs: FileSystem, folder: str) -> list[tuple[int, str]]:
    found = [
        (seq, name) for name in fs.listdir(folder) if (seq := parse_segment_name(name)) is not None
    ]
    return sorted(found)


def _check_files(fs: FileSystem, folder: str, problems: list[str]) -> tuple[int, int]:
    """Check the manifest, each snapshot and each segment on its own; (frames, segments)."""
    try:
        read_manifest(fs, folder)
    except (CorruptJournalError, JournalFolderError) as exc:
        problems.append(str(exc))
    for name in fs.listdir(folder):
        covers = parse_snapshot_name(name)
        if covers is None:
            continue
        file = os.path.join(folder, name)
        try:
            decode_snapshot(read_bytes(fs, file), file, covers)
        except (CorruptJournalError, JournalFolderError) as exc:
            problems.append(str(exc))
    segments = _segments(fs, folder)
    snapshot_seqs = sorted(
        seq for name in fs.listdir(folder) if (seq := parse_snapshot_name(name)) is not None
    )
    oldest = snapshot_seqs[0] if snapshot_seqs else 0
    if segments and segments[0][0] > oldest + 1:
        first_seq, name = segments[0]
        gap = MissingRecordsError(
            os.path.join(folder, name),
            0,
            oldest + 1,
            f"the oldest snapshot generation (seq {oldest}) cannot be replayed: the first "
            f"segment starts at seq {first_seq}",
        )
        problems.append(str(gap))
    frames = 0
    expected: int | None = None
    for i, (first_seq, name) in enumerate(segments):
        file = os.path.join(folder, name)
        if expected is not None and first_seq != expected:
            gap = MissingRecordsError(
                file, 0, expected, f"sequence gap: segment starts at seq {first_seq}"
            )
            problems.append(str(gap))
        try:
            data = read_bytes(fs, file)
        except JournalFolderError as exc:
            problems.append(str(exc))
            expected = None
            continue
        scan = scan_segment(data, first_seq)
        frames += len(scan.frames)
        expected = scan.next_seq
        damage = scan.damage
        if damage is not None and not (i == len(segments) - 1 and damage.tail_shaped):
            error = CorruptJournalError(file, damage.offset, damage.expected_seq, damage.reason)
            problems.append(str(error))
    return frames, len(segments)


def _torn_tail(folder: str, plan: RecoveryPlan) -> TornTail | None:
    if plan.torn_segment is None:
        return None
    file = os.path.join(folder, plan.torn_segment)
    return TornTail(
        file,
        plan.torn_offset,
        len(plan.torn_bytes),
        "",
        plan.torn_reason,
        plan.torn_whole_frame,
    )


def _verify_once(fs: FileSystem, folder: str) -> VerifyReport:
    problems: list[str] = []
    frames, segments = _check_files(fs, folder, problems)
    snapshot_seq = 0
    torn_tail: TornTail | None = None
    try:
        plan = plan_recovery(fs, folder)
    except (CorruptJournalError, JournalFolderError) as exc:
        if str(exc) not in problems:
            problems.append(str(exc))
    else:
        snapshot_seq = plan.snapshot_seq
        torn_tail = _torn_tail(folder, plan)
        for problem in plan.snapshot_problems:
            if problem not in problems:
                problems.append(problem)
    return VerifyReport(
        ok=not problems,
        frames=frames,
        segments=segments,
        snapshot_seq=snapshot_seq,
        problems=problems,
        torn_tail=torn_tail,
    )


def verify(path: str | os.PathLike[str], *, fs: FileSystem | None = None) -> VerifyReport:
    fs = OsFileSystem() if fs is None else fs
    folder = os.fspath(path)
    try:
        return read_consistently(fs, folder, lambda: _verify_once(fs, folder))
    except JournalFolderError as exc:
        return VerifyReport(ok=False, frames=0, segments=0, snapshot_seq=0, problems=[str(exc)])


def _frames_once(fs: FileSystem, folder: str) -> list[tuple[int, bytes]]:
    segments = _segments(fs, folder)
    frames: list[tuple[int, bytes]] = []
    for i, (first_seq, name) in enumerate(segments):
        file = os.path.join(folder, name)
        scan = scan_segment(read_bytes(fs, file), first_seq)
        frames.extend(scan.frames)
        damage = scan.damage
        if damage is not None and not (i == len(segments) - 1 and damage.tail_shaped):
            raise CorruptJournalError(file, damage.offset, damage.expected_seq, damage.reason)
    return frames


def iter_frames(
    path: str | os.PathLike[str], *, fs: FileSystem | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield (seq, payload) of every intact frame on disk, oldest segment first.

    Stops quietly at a torn tail (an append that never completed); raises
    CorruptJournalError on any other damage, JournalFolderError if the folder cannot be read
    (or kept changing under every try). The frames are read in one consistent pass first.
    """
    fs = OsFileSystem() if fs is None else fs
    folder = os.fspath(path)
    yield from read_consistently(fs, folder, lambda: _frames_once(fs, folder))
