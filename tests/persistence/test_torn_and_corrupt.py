"""Damage on disk: a cut anywhere in the last segment after a crash is a torn tail recovered
to a clean prefix; a flipped byte anywhere else is an error that says where."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from journal_damage import abandon, flip, write_file

from persistence import (
    CorruptJournalError,
    FileSystem,
    OsFileSystem,
    SimFileSystem,
    iter_frames,
    open_journal,
    verify,
)

SEGMENT_HEADER = 24
FRAME_HEADER = 16
PAYLOADS = [bytes([65 + i % 26]) * ((i * 7) % 23) for i in range(20)]


def make_journal(
    fs: FileSystem, folder: str, payloads: list[bytes], segment_bytes: int = 1 << 20
) -> bytes:
    """A journal as a crash leaves it: every record synced, the manifest as the last
    rollover wrote it (a clean close would vouch for every record). Returns the manifest."""
    journal, _ = open_journal(folder, fs=fs, segment_bytes=segment_bytes)
    for p in payloads:
        journal.append(p)
    journal.sync()
    abandon(journal)
    return fs.read_bytes(os.path.join(folder, "MANIFEST"))


def frame_ends(payloads: list[bytes]) -> list[int]:
    ends, pos = [], SEGMENT_HEADER
    for p in payloads:
        pos += FRAME_HEADER + len(p)
        ends.append(pos)
    return ends


def only_segment(fs: FileSystem, folder: str) -> str:
    [name] = [n for n in fs.listdir(folder) if n.endswith(".seg")]
    return os.path.join(folder, name)


def check_cut(
    fs: FileSystem, folder: str, segment: str, original: bytes, manifest: bytes, cut: int
) -> None:
    write_file(fs, segment, original[:cut])
    write_file(fs, os.path.join(folder, "MANIFEST"), manifest)
    if cut < SEGMENT_HEADER:
        # The manifest names a segment only once its header is on disk: a short one is damage.
        with pytest.raises(CorruptJournalError) as info:
            open_journal(folder, fs=fs)
        assert (info.value.file, info.value.offset, info.value.expected_seq) == (segment, 0, 1)
        return
    ends = frame_ends(PAYLOADS)
    k = sum(1 for end in ends if end <= cut)
    journal, recovery = open_journal(folder, fs=fs)
    assert [p for _, p in recovery.records] == PAYLOADS[:k], cut
    assert [s for s, _ in recovery.records] == list(range(1, k + 1))
    assert recovery.next_seq == k + 1
    clean_cut = cut in {SEGMENT_HEADER, *ends}
    if clean_cut:
        assert recovery.torn_tail is None, cut
    else:
        torn = recovery.torn_tail
        assert torn is not None, cut
        assert not torn.whole_frame, cut  # bytes stop short: no fsync of them completed
        start = ([SEGMENT_HEADER, *ends])[k]
        assert (torn.file, torn.offset, torn.length) == (segment, start, cut - start)
        assert fs.read_bytes(torn.saved_to) == original[start:cut]
        fs.remove(torn.saved_to)
    # The repaired journal takes appends where the prefix ends and reopens cleanly.
    assert journal.append(b"after") == k + 1
    journal.close()
    journal, recovery = open_journal(folder, fs=fs)
    assert recovery.torn_tail is None
    assert [p for _, p in recovery.records] == [*PAYLOADS[:k], b"after"]
    journal.close()


def test_cut_at_every_byte_offset_sim() -> None:
    fs, folder = SimFileSystem(), "/j"
    manifest = make_journal(fs, folder, PAYLOADS)
    segment = only_segment(fs, folder)
    original = fs.read_bytes(segment)
    assert len(original) == frame_ends(PAYLOADS)[-1]
    for cut in range(len(original) + 1):
        check_cut(fs, folder, segment, original, manifest, cut)


def test_cut_at_every_byte_offset_os(tmp_path: Path) -> None:
    fs, folder = OsFileSystem(), os.fspath(tmp_path / "j")
    manifest = make_journal(fs, folder, PAYLOADS)
    segment = only_segment(fs, folder)
    original = fs.read_bytes(segment)
    for cut in range(len(original) + 1):
        check_cut(fs, folder, segment, original, manifest, cut)


def test_cut_in_last_of_many_segments_keeps_earlier_ones() -> None:
    fs, folder = SimFileSystem(), "/j"
    make_journal(fs, folder, PAYLOADS, segment_bytes=120)
    segments = sorted(n for n in fs.listdir(folder) if n.endswith(".seg"))
    assert len(segments) > 3
    last = os.path.join(folder, segments[-1])
    data = fs.read_bytes(last)
    write_file(fs, last, data[: SEGMENT_HEADER + 5])
    first_in_last = int(segments[-1][8:28])
    journal, recovery = open_journal(folder, fs=fs)
    assert [p for _, p in recovery.records] == PAYLOADS[: first_in_last - 1]
    assert recovery.torn_tail is not None
    assert recovery.torn_tail.offset == SEGMENT_HEADER
    journal.close()


@pytest.mark.parametrize("fs_kind", ["sim", "os"])
def test_flipped_byte_in_a_middle_frame_is_named(fs_kind: str, tmp_path: Path) -> None:
    fs: FileSystem = SimFileSystem() if fs_kind == "sim" else OsFileSystem()
    folder = "/j" if fs_kind == "sim" else os.fspath(tmp_path / "j")
    make_journal(fs, folder, PAYLOADS)
    segment = only_segment(fs, folder)
    original = fs.read_bytes(segment)
    ends = frame_ends(PAYLOADS)
    start, end = ends[8], ends[9]  # frame of seq 10
    for offset in range(start, end):
        write_file(fs, segment, original)
        flip(fs, segment, offset)
        with pytest.raises(CorruptJournalError) as info:
            open_journal(folder, fs=fs)
        err = info.value
        assert (err.file, err.offset, err.expected_seq) == (segment, start, 10), offset
        message = str(err)
        assert segment in message
        assert f"offset {start}" in message
        assert "expected seq 10" in message
        assert fs.read_bytes(segment)[offset] != original[offset]  # nothing was cut
        report = verify(folder, fs=fs)
        assert not report.ok
        assert len(report.problems) == 1
        assert segment in report.problems[0]
    write_file(fs, segment, original)


def test_flip_in_segment_header_is_corruption() -> None:
    fs, folder = SimFileSystem(), "/j"
    make_journal(fs, folder, PAYLOADS)
    segment = only_segment(fs, folder)
    for offset in range(SEGMENT_HEADER):
        original = fs.read_bytes(segment)
        flip(fs, segment, offset)
        with pytest.raises(CorruptJournalError, match="expected seq 1"):
            open_journal(folder, fs=fs)
        write_file(fs, segment, original)


def test_flip_in_a_non_last_segment_tail_is_corruption() -> None:
    fs, folder = SimFileSystem(), "/j"
    make_journal(fs, folder, PAYLOADS, segment_bytes=120)
    segments = sorted(n for n in fs.listdir(folder) if n.endswith(".seg"))
    first = os.path.join(folder, segments[0])
    flip(fs, first, len(fs.read_bytes(first)) - 1)
    with pytest.raises(CorruptJournalError) as info:
        open_journal(folder, fs=fs)
    assert info.value.file == first
    assert "crc mismatch" in info.value.reason


def test_flip_in_the_last_frame_is_a_torn_tail() -> None:
    fs, folder = SimFileSystem(), "/j"
    make_journal(fs, folder, PAYLOADS)
    segment = only_segment(fs, folder)
    size = len(fs.read_bytes(segment))
    flip(fs, segment, size - 1)
    journal, recovery = open_journal(folder, fs=fs)
    assert [p for _, p in recovery.records] == PAYLOADS[:-1]
    assert recovery.torn_tail is not None
    assert recovery.torn_tail.offset == frame_ends(PAYLOADS)[-2]
    # A whole frame failing its CRC: a synced, acknowledged record may have rotted.
    assert recovery.torn_tail.whole_frame
    assert recovery.torn_tail.reason == "frame crc mismatch"
    journal.close()


def test_missing_segment_is_a_sequence_gap() -> None:
    fs, folder = SimFileSystem(), "/j"
    make_journal(fs, folder, PAYLOADS, segment_bytes=120)
    segments = sorted(n for n in fs.listdir(folder) if n.endswith(".seg"))
    fs.remove(os.path.join(folder, segments[1]))
    with pytest.raises(CorruptJournalError, match="sequence gap") as info:
        open_journal(folder, fs=fs)
    assert info.value.file.endswith(segments[2])
    assert info.value.expected_seq == int(segments[1][8:28])


def test_verify_and_iter_frames_read_without_changing_anything(tmp_path: Path) -> None:
    folder = os.fspath(tmp_path / "j")
    journal, _ = open_journal(folder, segment_bytes=120)
    for p in PAYLOADS:
        journal.append(p)
    journal.write_snapshot(b"state", 12)
    journal.sync()
    # verify works while the journal is open and locked.
    report = verify(folder)
    assert report.ok, report.problems
    assert report.snapshot_seq == 12
    assert report.torn_tail is None
    assert report.segments >= 2
    frames = list(iter_frames(folder))
    assert [p for _, p in frames] == PAYLOADS[-len(frames) :]
    assert report.frames == len(frames)
    segment = sorted(n for n in os.listdir(folder) if n.endswith(".seg"))[-1]
    path = os.path.join(folder, segment)
    with open(path, "ab") as f:
        f.write(b"\x05\x00\x00")
    before = sorted(os.listdir(folder))
    report = verify(folder)
    assert report.ok
    assert report.torn_tail is not None
    assert report.torn_tail.length == 3
    assert sorted(os.listdir(folder)) == before
    assert len(list(iter_frames(folder))) == len(frames)
    journal.close()
