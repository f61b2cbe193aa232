"""A zero-filled tail is a torn tail; a folder the journal cannot use is a JournalFolderError
naming the file; the read-only tools survive a live journal changing the folder."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from journal_damage import abandon, write_file

from persistence import (
    CorruptJournalError,
    JournalFolderError,
    OsFileSystem,
    SimFileSystem,
    iter_frames,
    open_journal,
    verify,
)
from persistence.frames import FRAME_HEADER

FOLDER = "/j"


def crashed_journal(count: int = 10) -> tuple[SimFileSystem, str]:
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs)
    for i in range(1, count + 1):
        journal.append(b"r%d" % i)
    journal.sync()
    abandon(journal)
    return fs, os.path.join(FOLDER, "journal-00000000000000000001.seg")


@pytest.mark.parametrize("zeros", [1, FRAME_HEADER - 1, FRAME_HEADER, 4096])
def test_a_zero_filled_tail_is_cut_as_a_torn_tail(zeros: int) -> None:
    fs, path = crashed_journal()
    data = fs.read_bytes(path)
    write_file(fs, path, data + bytes(zeros))
    journal, recovery = open_journal(FOLDER, fs=fs)
    assert [s for s, _ in recovery.records] == list(range(1, 11))
    torn = recovery.torn_tail
    assert torn is not None
    assert (torn.offset, torn.length, torn.whole_frame) == (len(data), zeros, False)
    assert torn.reason.startswith("zero-filled tail")
    assert fs.read_bytes(path) == data
    assert journal.append(b"next") == 11
    journal.close()


def test_zeros_after_a_clean_close_are_cut_too() -> None:
    # Zeros beyond every durable record are no durable record: cutting them loses nothing.
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs)
    journal.append(b"a")
    journal.close()
    path = os.path.join(FOLDER, "journal-00000000000000000001.seg")
    write_file(fs, path, fs.read_bytes(path) + bytes(100))
    journal, recovery = open_journal(FOLDER, fs=fs)
    assert recovery.records == [(1, b"a")]
    assert recovery.torn_tail is not None
    journal.close()


def test_a_frame_whose_end_was_zeroed_is_a_torn_tail() -> None:
    fs, path = crashed_journal()
    data = bytearray(fs.read_bytes(path))
    data[-2:] = b"\0\0"  # the last frame's payload never reached the disk
    write_file(fs, path, bytes(data) + bytes(512))
    journal, recovery = open_journal(FOLDER, fs=fs)
    assert [s for s, _ in recovery.records] == list(range(1, 10))
    assert recovery.torn_tail is not None
    assert recovery.torn_tail.reason.startswith("zero-filled tail") or (
        recovery.torn_tail.reason == "frame crc mismatch"
    )
    journal.close()


def test_zeros_before_an_intact_frame_are_damage() -> None:
    fs, path = crashed_journal()
    data = bytearray(fs.read_bytes(path))
    start = len(data) - 2 * (FRAME_HEADER + 3)
    data[start : start + FRAME_HEADER + 2] = bytes(FRAME_HEADER + 2)
    write_file(fs, path, bytes(data))
    with pytest.raises(CorruptJournalError):
        open_journal(FOLDER, fs=fs)


def _folder_with_a_directory_named(tmp_path: Path, name: str) -> str:
    folder = os.fspath(tmp_path / "j")
    journal, _ = open_journal(folder)
    journal.append(b"a")
    journal.close()
    path = os.path.join(folder, name)
    if os.path.exists(path):
        os.remove(path)
    os.mkdir(path)
    return path


@pytest.mark.parametrize(
    "name",
    ["journal-00000000000000000002.seg", "snapshot-00000000000000000001.snap", "MANIFEST"],
)
def test_a_directory_where_a_file_should_be_is_a_folder_error(tmp_path: Path, name: str) -> None:
    path = _folder_with_a_directory_named(tmp_path, name)
    with pytest.raises(JournalFolderError) as info:
        open_journal(os.path.dirname(path))
    assert info.value.file == path
    assert "directory" in info.value.reason.lower()
    report = verify(os.path.dirname(path))
    assert not report.ok
    assert any(path in p for p in report.problems)


def test_a_dangling_link_where_a_segment_should_be_is_a_folder_error(tmp_path: Path) -> None:
    folder = os.fspath(tmp_path / "j")
    journal, _ = open_journal(folder)
    journal.append(b"a")
    journal.close()
    link = os.path.join(folder, "journal-00000000000000000002.seg")
    os.symlink(os.path.join(folder, "nowhere"), link)
    with pytest.raises(JournalFolderError) as info:
        open_journal(folder)
    assert info.value.file == link
    report = verify(folder)
    assert not report.ok
    assert any(link in p and "No such file" in p for p in report.problems), report.problems


def test_a_folder_path_that_is_a_file_is_a_folder_error(tmp_path: Path) -> None:
    path = tmp_path / "plain-file"
    path.write_bytes(b"x")
    with pytest.raises(JournalFolderError) as info:
        open_journal(path)
    assert info.value.file == os.fspath(path)
    assert not verify(path).ok


def test_a_lock_that_is_a_directory_is_a_folder_error(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    (folder / "LOCK").mkdir(parents=True)
    with pytest.raises(JournalFolderError) as info:
        open_journal(folder)
    assert info.value.file == os.fspath(folder / "LOCK")


class _SnapshotDuringRead(SimFileSystem):
    """Runs `during` (a live journal's snapshot) just before the first segment read after
    it is armed, as a live journal can between a reader's listing and its reads."""

    def __init__(self) -> None:
        super().__init__()
        self.during: Callable[[], None] | None = None

    def read_bytes(self, path: str) -> bytes:
        during, self.during = self.during, None
        if during is not None and path.endswith(".seg"):
            during()
        elif during is not None:
            self.during = during
        return super().read_bytes(path)


def test_verify_and_iter_frames_read_again_when_a_snapshot_deletes_what_they_read() -> None:
    fs = _SnapshotDuringRead()
    journal, _ = open_journal(FOLDER, fs=fs, segment_bytes=100)

    def snapshot_now() -> None:
        journal.append(b"more")
        journal.write_snapshot(b"s", journal.last_seq)

    for i in range(1, 31):
        journal.append(b"r%d" % i)
        if i % 10 == 0:
            journal.write_snapshot(b"s", i)
    fs.during = snapshot_now
    report = verify(FOLDER, fs=fs)
    assert fs.during is None  # it ran, and deleted the oldest segment under the reader
    assert report.ok, report.problems
    assert report.snapshot_seq == 31
    fs.during = snapshot_now
    frames = list(iter_frames(FOLDER, fs=fs))
    assert fs.during is None
    assert frames[-1] == (32, b"more")
    journal.close()


def test_verify_on_a_live_folder_that_snapshots_often_never_fails(tmp_path: Path) -> None:
    folder = os.fspath(tmp_path / "j")
    journal, _ = open_journal(folder, segment_bytes=200, fsync="never")
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            for _ in range(5):
                journal.append(b"x" * 40)
            journal.write_snapshot(b"state", journal.last_seq)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(40):
            report = verify(folder, fs=OsFileSystem())
            assert report.ok or all("changed under" in p for p in report.problems), report
    finally:
        stop.set()
        writer.join()
        journal.close()
