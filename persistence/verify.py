"""Read-only inspection of a journal folder, safe while a live runtime holds it.

`verify` is fsck: it checks every snapshot and every frame of every segment, and reports
all it finds instead of stopping at the first problem. `iter_frames` feeds a dump tool.
Neither takes the lock nor writes a byte, so a tail the live writer is appending may show
as a torn tail; that is expected, and recovery would only cut it after a crash.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from persistence.errors import CorruptJournalError
from persistence.filesystem import FileSystem, OsFileSystem
from persistence.frames import scan_segment
from persistence.layout import parse_segment_name, parse_snapshot_name
from persistence.recovery import TornTail, plan_recovery
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


def verify(path: str | os.PathLike[str], *, fs: FileSystem | None = None) -> VerifyReport:
    fs = OsFileSystem() if fs is None else fs
    folder = os.fspath(path)
    problems: list[str] = []
    for name in fs.listdir(folder):
        covers = parse_snapshot_name(name)
        if covers is None:
            continue
        file = os.path.join(folder, name)
        try:
            decode_snapshot(fs.read_bytes(file), file, covers)
        except CorruptJournalError as exc:
            problems.append(str(exc))
    segments = _segments(fs, folder)
    frames = 0
    torn_tail: TornTail | None = None
    expected: int | None = None
    for i, (first_seq, name) in enumerate(segments):
        file = os.path.join(folder, name)
        if expected is not None and first_seq != expected:
            problems.append(
                str(CorruptJournalError(file, 0, expected, f"segment starts at seq {first_seq}"))
            )
        data = fs.read_bytes(file)
        scan = scan_segment(data, first_seq)
        frames += len(scan.frames)
        expected = scan.next_seq
        damage = scan.damage
        if damage is None:
            continue
        if i == len(segments) - 1 and damage.tail_shaped:
            torn_tail = TornTail(file, damage.offset, len(data) - damage.offset, "")
        else:
            problems.append(
                str(CorruptJournalError(file, damage.offset, damage.expected_seq, damage.reason))
            )
    snapshot_seq = 0
    try:
        snapshot_seq = plan_recovery(fs, folder).snapshot_seq
    except CorruptJournalError as exc:
        message = str(exc)
        if message not in problems:
            problems.append(message)
    return VerifyReport(
        ok=not problems,
        frames=frames,
        segments=len(segments),
        snapshot_seq=snapshot_seq,
        problems=problems,
        torn_tail=torn_tail,
    )


def iter_frames(
    path: str | os.PathLike[str], *, fs: FileSystem | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield (seq, payload) of every intact frame on disk, oldest segment first.

    Stops quietly at a torn tail (an append that never completed); raises
    CorruptJournalError on any other damage.
    """
    fs = OsFileSystem() if fs is None else fs
    folder = os.fspath(path)
    segments = _segments(fs, folder)
    for i, (first_seq, name) in enumerate(segments):
        file = os.path.join(folder, name)
        scan = scan_segment(fs.read_bytes(file), first_seq)
        yield from scan.frames
        damage = scan.damage
        if damage is not None and not (i == len(segments) - 1 and damage.tail_shaped):
            raise CorruptJournalError(file, damage.offset, damage.expected_seq, damage.reason)
