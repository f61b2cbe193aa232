"""Records that vanish without a gap: the newest segments deleted, the last one cut exactly
at a frame boundary, a snapshot whose following segment is gone. Each is refused by name,
file and offset, when the folder holds the evidence (the manifest, or the snapshot itself)."""

from __future__ import annotations

import os

import pytest
from journal_damage import abandon, flip, write_file

from persistence import (
    CorruptJournalError,
    MissingRecordsError,
    SimFileSystem,
    open_journal,
    verify,
)
from persistence.frames import FRAME_HEADER, SEGMENT_HEADER

FOLDER = "/j"


def segments(fs: SimFileSystem) -> list[str]:
    return sorted(n for n in fs.listdir(FOLDER) if n.endswith(".seg"))


def closed_journal(count: int = 30, segment_bytes: int = 1 << 20) -> SimFileSystem:
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs, segment_bytes=segment_bytes)
    for i in range(1, count + 1):
        journal.append(b"r%d" % i)
    journal.close()
    return fs


def test_a_cut_at_a_frame_boundary_after_a_clean_close_is_refused() -> None:
    fs = closed_journal()
    [name] = segments(fs)
    path = os.path.join(FOLDER, name)
    data = fs.read_bytes(path)
    last_frame = FRAME_HEADER + len(b"r30")
    write_file(fs, path, data[:-last_frame])  # exactly one whole frame gone
    with pytest.raises(MissingRecordsError) as info:
        open_journal(FOLDER, fs=fs)
    err = info.value
    assert (err.file, err.offset, err.expected_seq) == (path, len(data) - last_frame, 30)
    assert "seq 30 was durable" in str(err)
    report = verify(FOLDER, fs=fs)
    assert not report.ok
    assert any(path in p and "seq 30 was durable" in p for p in report.problems)


def test_the_newest_segments_deleted_are_refused() -> None:
    fs = closed_journal(count=60, segment_bytes=120)
    names = segments(fs)
    assert len(names) > 4
    for name in names[-2:]:
        fs.remove(os.path.join(FOLDER, name))
    with pytest.raises(MissingRecordsError) as info:
        open_journal(FOLDER, fs=fs, segment_bytes=120)
    assert info.value.file == os.path.join(FOLDER, names[-1])
    assert info.value.offset == 0
    assert "segment missing" in str(info.value)
    report = verify(FOLDER, fs=fs)
    assert any(names[-1] in p for p in report.problems)


def test_the_newest_segment_deleted_after_a_crash_is_refused() -> None:
    # No clean close: the manifest is as the last rollover left it, naming the new segment.
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs, segment_bytes=120)
    for i in range(1, 61):
        journal.append(b"r%d" % i)
    journal.sync()
    abandon(journal)
    newest = segments(fs)[-1]
    fs.remove(os.path.join(FOLDER, newest))
    with pytest.raises(MissingRecordsError, match="segment missing") as info:
        open_journal(FOLDER, fs=fs, segment_bytes=120)
    assert info.value.file == os.path.join(FOLDER, newest)


def test_a_snapshot_whose_following_segment_is_gone_is_refused_without_a_manifest() -> None:
    # A folder from before manifests holds no such evidence; the snapshot alone shows that
    # a segment holding the seq after it must exist.
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs, segment_bytes=120)
    for i in range(1, 41):
        journal.append(b"r%d" % i)
    journal.write_snapshot(b"state@30", 30)
    journal.close()
    fs.remove(os.path.join(FOLDER, "MANIFEST"))
    for name in segments(fs):
        if int(name[8:28]) > 20:
            fs.remove(os.path.join(FOLDER, name))
    with pytest.raises(MissingRecordsError, match="before the snapshot's seq 30") as info:
        open_journal(FOLDER, fs=fs, segment_bytes=120)
    assert info.value.file.startswith(FOLDER + "/journal-")


def test_a_snapshot_with_no_segment_at_all_is_refused() -> None:
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs)
    journal.append(b"a")
    journal.write_snapshot(b"state@1", 1)
    journal.append(b"b")
    journal.close()
    fs.remove(os.path.join(FOLDER, "MANIFEST"))
    for name in segments(fs):
        fs.remove(os.path.join(FOLDER, name))
    with pytest.raises(MissingRecordsError, match="no segment holds") as info:
        open_journal(FOLDER, fs=fs)
    assert info.value.file == os.path.join(FOLDER, "journal-00000000000000000002.seg")


def test_damage_in_the_last_frame_after_a_clean_close_is_not_a_torn_tail() -> None:
    fs = closed_journal()
    [name] = segments(fs)
    path = os.path.join(FOLDER, name)
    size = len(fs.read_bytes(path))
    flip(fs, path, size - 1)
    with pytest.raises(CorruptJournalError) as info:
        open_journal(FOLDER, fs=fs)
    err = info.value
    assert not isinstance(err, MissingRecordsError)
    assert (err.file, err.offset, err.expected_seq) == (path, size - FRAME_HEADER - 3, 30)
    assert "damage, not an interrupted append" in err.reason
    assert fs.read_bytes(path)[-1] != 0  # nothing was cut


def test_without_evidence_a_cut_at_a_frame_boundary_cannot_be_seen() -> None:
    # What no log can detect: records after the last point anything vouched for, cut at a
    # frame boundary, look like a journal that simply ended there.
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs)
    for i in range(1, 11):
        journal.append(b"r%d" % i)
    journal.sync()
    abandon(journal)
    [name] = segments(fs)
    path = os.path.join(FOLDER, name)
    data = fs.read_bytes(path)
    write_file(fs, path, data[: SEGMENT_HEADER + 5 * (FRAME_HEADER + 2)])
    journal, recovery = open_journal(FOLDER, fs=fs)
    assert [s for s, _ in recovery.records] == [1, 2, 3, 4, 5]
    assert recovery.torn_tail is None
    journal.close()


def test_a_damaged_manifest_is_refused_by_name() -> None:
    fs = closed_journal()
    path = os.path.join(FOLDER, "MANIFEST")
    flip(fs, path, 20)
    with pytest.raises(CorruptJournalError, match="bad manifest: crc mismatch") as info:
        open_journal(FOLDER, fs=fs)
    assert info.value.file == path
    assert "move it aside" in str(info.value)
    assert any(path in p for p in verify(FOLDER, fs=fs).problems)
    # Moved aside, the folder opens as one from before manifests did.
    fs.rename(path, path + ".bad")
    journal, recovery = open_journal(FOLDER, fs=fs)
    assert len(recovery.records) == 30
    journal.close()


def test_verify_reports_a_fallback_generation_that_lost_its_first_segment() -> None:
    fs = closed_journal(count=40, segment_bytes=120)
    journal, _ = open_journal(FOLDER, fs=fs, segment_bytes=120)
    journal.write_snapshot(b"s40", 40)
    for i in range(41, 61):
        journal.append(b"r%d" % i)
    journal.write_snapshot(b"s60", 60)
    journal.close()
    oldest = segments(fs)[0]
    assert int(oldest[8:28]) <= 41
    fs.remove(os.path.join(FOLDER, oldest))
    # Nothing acknowledged is lost: the newest snapshot does not need it...
    journal, recovery = open_journal(FOLDER, fs=fs, segment_bytes=120)
    assert recovery.snapshot_seq == 60
    journal.close()
    # ...but the fallback is gone, and fsck says so.
    report = verify(FOLDER, fs=fs)
    assert not report.ok
    assert any(
        "oldest snapshot generation (seq 40) cannot be replayed" in p for p in report.problems
    )
