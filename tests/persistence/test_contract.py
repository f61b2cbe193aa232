"""The journal contract, kept identically by MemoryJournal and the file journal on both the
real and the simulated file system."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from persistence import (
    CorruptJournalError,
    FsyncPolicy,
    JournalError,
    JournalLockedError,
    OsFileSystem,
    SimFileSystem,
    open_journal,
)

if TYPE_CHECKING:
    from conftest import Backend, FileBackend

REPO_ROOT = Path(__file__).resolve().parents[2]


def payload(i: int) -> bytes:
    return f"record-{i}-".encode() * (i % 5 + 1)


def test_append_then_reopen_returns_the_same_records(backend: Backend) -> None:
    journal, recovery = backend.open()
    assert recovery.records == []
    assert recovery.snapshot is None
    assert recovery.next_seq == 1
    seqs = [journal.append(payload(i)) for i in range(1, 11)]
    journal.sync()
    assert seqs == list(range(1, 11))
    assert journal.last_seq == 10
    journal, recovery = backend.reopen(journal)
    assert recovery.records == [(i, payload(i)) for i in range(1, 11)]
    assert recovery.next_seq == 11
    assert recovery.torn_tail is None
    assert journal.append(b"more") == 11
    journal, recovery = backend.reopen(journal)
    assert recovery.records[-1] == (11, b"more")
    journal.close()


def test_empty_payloads_are_records_too(backend: Backend) -> None:
    journal, _ = backend.open()
    assert journal.append(b"") == 1
    assert journal.append(b"x") == 2
    journal, recovery = backend.reopen(journal)
    assert recovery.records == [(1, b""), (2, b"x")]
    journal.close()


def test_segments_roll_and_reopen_across_many(backend: Backend) -> None:
    journal, _ = backend.open(segment_bytes=200) if backend.name != "memory" else backend.open()
    for i in range(1, 101):
        assert journal.append(payload(i)) == i
    journal.sync()
    if backend.name != "memory":
        assert backend.fs is not None
        segments = [n for n in backend.fs.listdir(backend.folder) if n.endswith(".seg")]
        assert len(segments) > 10
        assert segments == sorted(segments)
        assert segments[0] == "journal-00000000000000000001.seg"
    journal, recovery = backend.reopen(journal, segment_bytes=200)
    assert recovery.records == [(i, payload(i)) for i in range(1, 101)]
    for i in range(101, 121):
        assert journal.append(payload(i)) == i
    journal, recovery = backend.reopen(journal, segment_bytes=200)
    assert [seq for seq, _ in recovery.records] == list(range(1, 121))
    journal.close()


def test_snapshot_then_tail_replay(backend: Backend) -> None:
    journal, _ = backend.open()
    for i in range(1, 11):
        journal.append(payload(i))
    journal.write_snapshot(b"state@6", 6)
    assert journal.snapshot_seq == 6
    for i in range(11, 15):
        journal.append(payload(i))
    journal, recovery = backend.reopen(journal)
    assert recovery.snapshot == b"state@6"
    assert recovery.snapshot_seq == 6
    assert recovery.records == [(i, payload(i)) for i in range(7, 15)]
    assert recovery.next_seq == 15
    journal.close()


def test_snapshot_of_everything_leaves_no_records(backend: Backend) -> None:
    journal, _ = backend.open()
    for i in range(1, 6):
        journal.append(payload(i))
    journal.write_snapshot(b"all", 5)
    assert journal.size_since_snapshot == 0
    journal, recovery = backend.reopen(journal)
    assert (recovery.snapshot, recovery.snapshot_seq, recovery.records) == (b"all", 5, [])
    assert recovery.next_seq == 6
    assert journal.append(b"six") == 6
    assert journal.size_since_snapshot > 0
    journal, recovery = backend.reopen(journal)
    assert recovery.records == [(6, b"six")]
    journal.close()


def test_snapshot_rejects_seqs_outside_what_exists(backend: Backend) -> None:
    journal, _ = backend.open()
    journal.append(b"a")
    journal.append(b"b")
    with pytest.raises(ValueError, match="covers_seq=3"):
        journal.write_snapshot(b"x", 3)
    journal.write_snapshot(b"x", 2)
    with pytest.raises(ValueError, match="covers_seq=1"):
        journal.write_snapshot(b"y", 1)
    journal.close()


def test_closed_journal_refuses_writes(backend: Backend) -> None:
    journal, _ = backend.open()
    journal.append(b"a")
    journal.close()
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.append(b"b")
    with pytest.raises(JournalError, match="closed"):
        journal.sync()


def test_policy_is_parsed_and_reported(backend: Backend) -> None:
    journal, _ = backend.open(fsync="never")
    assert journal.policy is FsyncPolicy.NEVER
    journal.append(b"a")
    journal.sync()
    journal.close()
    with pytest.raises(ValueError, match="'sometimes'"):
        backend.open(fsync="sometimes")


def test_size_since_snapshot_grows_with_appends(backend: Backend) -> None:
    journal, _ = backend.open()
    before = journal.size_since_snapshot
    journal.append(b"x" * 100)
    assert journal.size_since_snapshot >= before + 100
    journal.close()


# -- file journal only ---------------------------------------------------------------------


def test_previous_snapshot_generation_is_kept(file_backend: FileBackend) -> None:
    journal, _ = file_backend.open()
    for i in range(1, 10):
        journal.append(payload(i))
        if i % 3 == 0:
            journal.write_snapshot(f"state@{i}".encode(), i)
    snapshots = [n for n in file_backend.files() if n.startswith("snapshot-")]
    assert snapshots == [
        "snapshot-00000000000000000006.snap",
        "snapshot-00000000000000000009.snap",
    ]
    journal.close()


def _first_seqs(file_backend: FileBackend) -> list[int]:
    return [int(n[8:28]) for n in file_backend.files() if n.endswith(".seg")]


def test_segments_go_once_the_generation_before_the_newest_covers_them(
    file_backend: FileBackend,
) -> None:
    journal, _ = file_backend.open(segment_bytes=150)
    for i in range(1, 41):
        journal.append(payload(i))
    before = _first_seqs(file_backend)
    assert len(before) > 5
    # The first snapshot's fallback is a replay from seq 1: every segment stays.
    journal.write_snapshot(b"state@25", 25)
    assert _first_seqs(file_backend) == before
    journal, recovery = file_backend.reopen(journal, segment_bytes=150)
    assert recovery.records == [(i, payload(i)) for i in range(26, 41)]
    # Now the fallback is the snapshot at 25: what it covers goes, what follows it stays.
    journal.write_snapshot(b"state@40", 40)
    kept = _first_seqs(file_backend)
    assert len(kept) < len(before)
    assert kept[0] <= 26 < kept[1]
    assert kept[-1] == 41
    journal, recovery = file_backend.reopen(journal, segment_bytes=150)
    assert (recovery.snapshot_seq, recovery.records, recovery.next_seq) == (40, [], 41)
    for i in range(41, 61):
        journal.append(payload(i))
    journal.write_snapshot(b"state@60", 60)
    assert _first_seqs(file_backend)[0] > 26
    assert _first_seqs(file_backend)[0] <= 41
    journal.close()


def _corrupt_newest_snapshot(file_backend: FileBackend) -> str:
    assert file_backend.fs is not None
    newest = sorted(n for n in file_backend.files() if n.startswith("snapshot-"))[-1]
    path = os.path.join(file_backend.folder, newest)
    data = bytearray(file_backend.fs.read_bytes(path))
    data[-1] ^= 0xFF
    handle = file_backend.fs.create(path)
    handle.write(bytes(data))
    handle.fsync()
    handle.close()
    return newest


def test_corrupt_newest_snapshot_falls_back_when_segments_remain(
    file_backend: FileBackend,
) -> None:
    journal, _ = file_backend.open()
    for i in range(1, 11):
        journal.append(payload(i))
        if i in (5, 8):
            journal.write_snapshot(f"state@{i - 2}".encode(), i - 2)
    journal.close()
    # Each snapshot covered less than the current segment holds, so no segment was deleted.
    bad = _corrupt_newest_snapshot(file_backend)
    journal, recovery = file_backend.open()
    assert recovery.snapshot == b"state@3"
    assert recovery.records == [(i, payload(i)) for i in range(4, 11)]
    assert bad + ".corrupt" in file_backend.files()
    journal.close()


def test_corrupt_newest_snapshot_falls_back_though_it_covered_whole_segments(
    file_backend: FileBackend,
) -> None:
    # Each snapshot covers everything so far, so each could have deleted every older
    # segment: the previous generation's must stay for the fallback to work.
    journal, _ = file_backend.open(segment_bytes=100)
    for i in range(1, 31):
        journal.append(payload(i))
        if i in (10, 20):
            journal.write_snapshot(f"state@{i}".encode(), i)
    journal.close()
    bad = _corrupt_newest_snapshot(file_backend)
    journal, recovery = file_backend.open(segment_bytes=100)
    assert recovery.snapshot == b"state@10"
    assert recovery.records == [(i, payload(i)) for i in range(11, 31)]
    assert len(recovery.damaged_snapshots) == 1
    assert bad in recovery.damaged_snapshots[0]
    assert "crc mismatch" in recovery.damaged_snapshots[0]
    assert bad + ".corrupt" in file_backend.files()
    journal.close()
    # The folder is whole again: it reopens from the surviving generation.
    journal, recovery = file_backend.open(segment_bytes=100)
    assert (recovery.snapshot_seq, recovery.damaged_snapshots) == (10, ())
    journal.close()


def test_corrupt_newest_snapshot_without_the_fallback_segments_is_an_error(
    file_backend: FileBackend,
) -> None:
    assert file_backend.fs is not None
    journal, _ = file_backend.open(segment_bytes=100)
    for i in range(1, 21):
        journal.append(payload(i))
        if i in (10, 20):
            journal.write_snapshot(f"state@{i}".encode(), i)
    journal.close()
    bad = _corrupt_newest_snapshot(file_backend)
    for name in file_backend.files():
        if name.endswith(".seg") and int(name[8:28]) <= 11:
            file_backend.fs.remove(os.path.join(file_backend.folder, name))
    with pytest.raises(CorruptJournalError) as info:
        file_backend.open(segment_bytes=100)
    assert bad in info.value.file
    assert "crc mismatch" in str(info.value)
    assert "previous generation" in str(info.value)
    assert bad in file_backend.files()  # nothing was moved aside


def test_corrupt_only_snapshot_falls_back_to_a_replay_from_seq_1(
    file_backend: FileBackend,
) -> None:
    journal, _ = file_backend.open()
    journal.append(b"a")
    journal.write_snapshot(b"state", 1)
    journal.append(b"b")
    journal.close()
    _corrupt_newest_snapshot(file_backend)
    journal, recovery = file_backend.open()
    assert (recovery.snapshot, recovery.records) == (None, [(1, b"a"), (2, b"b")])
    journal.close()


def test_corrupt_only_snapshot_without_seq_1_is_an_error(file_backend: FileBackend) -> None:
    assert file_backend.fs is not None
    journal, _ = file_backend.open(segment_bytes=60)
    for i in range(1, 6):
        journal.append(payload(i))
    journal.write_snapshot(b"state", 5)
    journal.close()
    bad = _corrupt_newest_snapshot(file_backend)
    file_backend.fs.remove(os.path.join(file_backend.folder, "journal-00000000000000000001.seg"))
    with pytest.raises(CorruptJournalError, match="expected seq 5") as info:
        file_backend.open(segment_bytes=60)
    assert info.value.file.endswith(bad)
    assert "the replay from seq 1 is unusable" in str(info.value)


def test_second_open_in_process_is_locked(file_backend: FileBackend) -> None:
    journal, _ = file_backend.open()
    # A fresh OsFileSystem is a separate opener; for the simulation the lock is per instance.
    other_fs = OsFileSystem() if file_backend.name == "os" else file_backend.fs
    with pytest.raises(JournalLockedError, match="locked") as info:
        open_journal(file_backend.folder, fs=other_fs)
    assert file_backend.folder in str(info.value)
    journal.close()
    journal, _ = open_journal(file_backend.folder, fs=other_fs)
    journal.close()


def test_second_open_from_another_process_is_locked(tmp_path: Path) -> None:
    folder = os.fspath(tmp_path / "journal")
    code = (
        "import sys, persistence\n"
        "try:\n"
        "    persistence.open_journal(sys.argv[1])\n"
        "except persistence.JournalLockedError as exc:\n"
        "    print('LOCKED', exc)\n"
        "else:\n"
        "    print('OPENED')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.fspath(REPO_ROOT)}
    with open_journal(folder)[0]:
        result = subprocess.run(
            [sys.executable, "-c", code, folder],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=30,
        )
        assert result.stdout.startswith("LOCKED"), result.stderr
        assert folder in result.stdout
        assert f"pid {os.getpid()}" in result.stdout
    result = subprocess.run(
        [sys.executable, "-c", code, folder],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=30,
    )
    assert result.stdout.strip() == "OPENED", result.stderr


def test_stale_snapshot_temp_file_is_removed(file_backend: FileBackend) -> None:
    journal, _ = file_backend.open()
    journal.append(b"a")
    journal.close()
    assert file_backend.fs is not None
    tmp = os.path.join(file_backend.folder, "snapshot-00000000000000000001.snap.tmp")
    handle = file_backend.fs.create(tmp)
    handle.write(b"half a snapshot")
    handle.close()
    journal, recovery = file_backend.open()
    assert recovery.records == [(1, b"a")]
    assert not file_backend.fs.exists(tmp)
    journal.close()


def test_context_manager_releases_the_lock(file_backend: FileBackend) -> None:
    journal, _ = file_backend.open()
    with journal:
        journal.append(b"a")
    journal, recovery = file_backend.open()
    assert recovery.records == [(1, b"a")]
    journal.close()


def test_a_background_sync_neither_blocks_appends_nor_loses_a_rollover(tmp_path: Path) -> None:
    """`sync` fsyncs outside the journal's lock (the handle pinned): appends and segment
    rollovers on another thread go on meanwhile, and every record comes back."""
    journal, _ = open_journal(tmp_path, segment_bytes=2_000, fsync="interval")
    stop = threading.Event()
    errors: list[BaseException] = []

    def syncer() -> None:
        try:
            while not stop.is_set():
                journal.sync()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=syncer)
    thread.start()
    try:
        for i in range(1, 401):
            journal.append(payload(i))
    finally:
        stop.set()
        thread.join()
    assert not errors
    journal.close()
    assert len(list(tmp_path.glob("journal-*.seg"))) >= 10  # it rolled, many times
    _, recovery = open_journal(tmp_path)
    assert [seq for seq, _ in recovery.records] == list(range(1, 401))
    assert [p for _, p in recovery.records] == [payload(i) for i in range(1, 401)]


def test_high_water_is_kept_across_reopens(backend: Backend) -> None:
    journal, recovery = backend.open()
    assert recovery.high_water == 0
    journal.append(b"a")
    journal.set_high_water(1000)
    assert journal.high_water == 1000
    journal, recovery = backend.reopen(journal)
    assert (recovery.high_water, journal.high_water) == (1000, 1000)
    journal.set_high_water(7)  # the caller's mark: it may lower it too
    journal, recovery = backend.reopen(journal)
    assert recovery.high_water == 7
    journal.close()


@pytest.mark.parametrize("bad", [-1, 2**64, True, 1.5, "9"])
def test_high_water_refuses_what_it_cannot_hold(backend: Backend, bad: object) -> None:
    journal, _ = backend.open()
    with pytest.raises((TypeError, ValueError), match="high water") as info:
        journal.set_high_water(bad)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)
    journal.close()


def test_high_water_survives_a_crash_that_loses_unsynced_records() -> None:
    fs = SimFileSystem()
    journal, _ = open_journal("/q", fs=fs, fsync="interval")
    journal.append(b"synced")
    journal.sync()
    journal.append(b"lost")
    journal.set_high_water(2)
    fs.crash()
    journal, recovery = open_journal("/q", fs=fs)
    assert recovery.records == [(1, b"synced")]
    assert recovery.high_water == 2
    journal.close()
