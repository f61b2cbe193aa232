"""Crashes and I/O faults on the simulated file system."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persistence import (
    FsyncPolicy,
    JournalFailedError,
    SimFileSystem,
    open_journal,
)
from persistence.frames import encode_frame

FOLDER = "/data/q"


def test_crash_drops_unsynced_appends_and_keeps_synced_ones() -> None:
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs)
    journal.append(b"one")
    journal.append(b"two")
    journal.sync()
    journal.append(b"three")
    fs.crash()
    journal, recovery = open_journal(FOLDER, fs=fs)
    assert recovery.records == [(1, b"one"), (2, b"two")]
    assert recovery.torn_tail is None
    assert journal.append(b"three again") == 3
    journal.close()


def test_crash_before_the_first_sync_leaves_an_empty_journal() -> None:
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs)
    journal.append(b"lost")
    fs.crash()
    journal, recovery = open_journal(FOLDER, fs=fs)
    assert (recovery.records, recovery.next_seq) == ([], 1)
    journal.close()


def test_never_policy_sync_does_not_reach_the_disk() -> None:
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs, fsync=FsyncPolicy.NEVER)
    journal.append(b"a")
    journal.sync()
    fs.crash()
    journal, recovery = open_journal(FOLDER, fs=fs, fsync="never")
    assert recovery.records == []
    journal.append(b"b")
    journal.close()  # close fsyncs whatever the policy
    fs.crash()
    journal, recovery = open_journal(FOLDER, fs=fs)
    assert recovery.records == [(1, b"b")]
    journal.close()


def test_torn_write_is_cut_at_recovery() -> None:
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs)
    for p in (b"a", b"bb", b"ccc"):
        journal.append(p)
    journal.sync()
    fs.tear_next_write(5)
    journal.append(b"x" * 40)
    fs.crash()
    journal, recovery = open_journal(FOLDER, fs=fs)
    assert [p for _, p in recovery.records] == [b"a", b"bb", b"ccc"]
    torn = recovery.torn_tail
    assert torn is not None
    assert torn.length == 5
    assert torn.file.endswith("journal-00000000000000000001.seg")
    assert torn.saved_to == f"{torn.file}.torn-{torn.offset}"
    assert fs.read_bytes(torn.saved_to) == encode_frame(4, b"x" * 40)[:5]
    assert journal.append(b"d") == 4
    journal.sync()
    fs.crash()
    journal, recovery = open_journal(FOLDER, fs=fs)
    assert recovery.torn_tail is None
    assert [p for _, p in recovery.records] == [b"a", b"bb", b"ccc", b"d"]
    journal.close()


def test_failed_fsync_poisons_the_journal() -> None:
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs)
    journal.append(b"a")
    journal.sync()
    journal.append(b"b")
    fs.fail_next_fsync()
    with pytest.raises(JournalFailedError) as info:
        journal.sync()
    assert isinstance(info.value.__cause__, OSError)
    # Never retried, even though the next fsync would succeed.
    with pytest.raises(JournalFailedError):
        journal.sync()
    with pytest.raises(JournalFailedError):
        journal.append(b"c")
    with pytest.raises(JournalFailedError):
        journal.write_snapshot(b"s", 1)
    journal.close()  # releases the lock without trusting another fsync
    fs.crash()
    journal, recovery = open_journal(FOLDER, fs=fs)
    assert recovery.records == [(1, b"a")]
    journal.close()


def test_failed_write_poisons_the_journal() -> None:
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs)
    fs.fail_next_write()
    with pytest.raises(JournalFailedError):
        journal.append(b"a")
    with pytest.raises(JournalFailedError):
        journal.append(b"b")
    journal.close()
    journal, recovery = open_journal(FOLDER, fs=fs)
    assert recovery.records == []
    journal.close()


def test_crash_drops_an_unsynced_snapshot_rename_but_not_a_synced_one() -> None:
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs, segment_bytes=64)
    for i in range(10):
        journal.append(bytes([i]) * 10)
    journal.write_snapshot(b"state@10", 10)
    journal.append(b"eleven")
    fs.crash()
    journal, recovery = open_journal(FOLDER, fs=fs, segment_bytes=64)
    assert (recovery.snapshot, recovery.snapshot_seq, recovery.records) == (b"state@10", 10, [])
    assert recovery.next_seq == 11
    journal.close()


# -- property: whatever happens, recovery gives a prefix that includes all that was synced ---


def encode_state(records: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(r)) + r for r in records)


def decode_state(data: bytes) -> list[bytes]:
    records, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        records.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return records


operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 40)),
        st.tuples(st.just("sync"), st.just(0)),
        st.tuples(st.just("snapshot"), st.integers(0, 100)),
        st.tuples(st.just("crash"), st.just(0)),
        st.tuples(st.just("tear"), st.integers(0, 60)),
        st.tuples(st.just("fail_fsync"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=operations, policy=st.sampled_from(["always", "interval"]))
def test_recovery_is_a_prefix_holding_everything_synced(
    ops: list[tuple[str, int]], policy: str
) -> None:
    fs = SimFileSystem()
    journal, _ = open_journal(FOLDER, fs=fs, segment_bytes=120, fsync=policy)
    appended: list[bytes] = []
    durable = 0  # every record up to here must survive any crash
    failed = False

    def crash_and_check() -> None:
        nonlocal journal, appended, durable, failed
        fs.crash()
        journal, recovery = open_journal(FOLDER, fs=fs, segment_bytes=120, fsync=policy)
        from_snapshot = decode_state(recovery.snapshot) if recovery.snapshot is not None else []
        assert len(from_snapshot) == recovery.snapshot_seq
        assert [s for s, _ in recovery.records] == list(
            range(recovery.snapshot_seq + 1, recovery.next_seq)
        )
        recovered = from_snapshot + [p for _, p in recovery.records]
        assert recovered == appended[: len(recovered)]
        assert len(recovered) >= durable
        appended, durable, failed = recovered, len(recovered), False

    for op, arg in ops:
        if op == "crash":
            crash_and_check()
            continue
        if failed:
            continue
        try:
            if op == "append":
                payload = len(appended).to_bytes(4, "little") + b"p" * arg
                seq = journal.append(payload)
                appended.append(payload)
                assert seq == len(appended)
            elif op == "sync":
                journal.sync()
                durable = len(appended)
            elif op == "snapshot":
                low = journal.snapshot_seq
                covers = low + (len(appended) - low) * arg // 100
                journal.write_snapshot(encode_state(appended[:covers]), covers)
                durable = max(durable, covers)
            elif op == "tear":
                fs.tear_next_write(arg)
            elif op == "fail_fsync":
                fs.fail_next_fsync()
        except JournalFailedError:
            failed = True
    crash_and_check()
    journal.close()
