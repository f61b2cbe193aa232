"""The durable journal under a real runtime: round trips, snapshots, locking, corruption and
fsync failure."""

# Stays on Runtime: the journal's files, locking, snapshots and fsync failures, and the core
# compared with its replay.

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replay_workload import workload

import persistence
from actorq import (
    ActorqError,
    Backoff,
    Job,
    JobState,
    RuntimeClosedError,
    VirtualClock,
)
from actorq._actors.changelog import MemoryChangeLog
from actorq._core import CoreState
from actorq._core.records import JobRecord, Retention
from actorq._journal import (
    JournalChangeLog,
    JournalCorruptError,
    JournalFailedError,
    JournalLockedError,
    open_changelog,
)
from actorq._journal_codec import SCHEMA_VERSION, PayloadError, decode_batch, encode_batch
from actorq._runtime import Runtime


def replay_folder(path: Path) -> tuple[CoreState, JournalChangeLog]:
    """Open the folder as a runtime would and replay it into a fresh core (then close)."""
    changelog = open_changelog(path)
    try:
        core = CoreState()
        for change in changelog.replay():
            core.apply_change(change)
    finally:
        changelog.close()
    return core, changelog


async def test_a_reopened_folder_holds_exactly_the_state_it_was_closed_with(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    async with Runtime(path=tmp_path, clock=clock, seed=7) as rt:
        jobs = await workload(rt, clock, extended=True)
        counts = await rt.counts()
    live = rt._core.snapshot()
    assert jobs["flaky"].attempts_made == 3
    assert jobs["steps"].state is JobState.COMPLETED

    core, _ = replay_folder(tmp_path)
    assert core.snapshot() == live
    assert core.index_view() == rt._core.index_view()

    clock2 = VirtualClock(start=clock.now())
    async with Runtime(path=tmp_path, clock=clock2, seed=7) as rt2:
        assert rt2._core.snapshot() == live
        assert await rt2.counts() == counts
        steps = await rt2.queue("work").get_job(jobs["steps"].id)
        assert steps is not None
        assert steps.data == {"kind": "steps", "seen": True, "f": 0.1, "t": [1, 2]}
        assert steps.progress is None
        assert steps.logs == ["half"]
        none = await rt2.queue("work").get_job(jobs["none"].id)
        assert none is not None
        assert none.return_value is None
        # and it keeps working: ids continue after the replayed ones
        job = await rt2.queue("work").add("after", {"kind": "plain"})
        assert job.id == max(j.id for j in jobs.values()) + 1


async def test_snapshot_plus_tail_replays_to_the_live_state(tmp_path: Path) -> None:
    clock = VirtualClock()
    async with Runtime(path=tmp_path, clock=clock, seed=3) as rt:
        await workload(rt, clock, extended=True)
        await rt.snapshot()
        changelog = rt._journal
        assert isinstance(changelog, JournalChangeLog)
        covered = changelog.journal.snapshot_seq
        assert covered == changelog.last_seq > 0
        q = rt.queue("tail")
        for i in range(5):
            await q.add("t", {"i": i}, priority=i % 2)
        await rt.queue("parked").resume()
        await rt.queue("parked").pause()
        await rt.snapshot()  # a second generation
        await q.add("t", {"i": 99}, lifo=True)
        await q.pause()
        live = rt._core.snapshot()
        live_index = rt._core.index_view()
        assert changelog.journal.snapshot_seq > covered
    core, reopened = replay_folder(tmp_path)
    assert core.snapshot() == live
    assert core.index_view() == live_index
    assert reopened.replayed_records == 2  # the tail after the newest snapshot
    names = sorted(os.listdir(tmp_path))
    assert sum(name.startswith("snapshot-") for name in names) == 2


async def test_a_second_runtime_on_an_open_folder_gets_a_clear_error(tmp_path: Path) -> None:
    async with Runtime(path=tmp_path) as rt:
        await rt.queue("q").add("x")
        second = Runtime(path=tmp_path)
        with pytest.raises(JournalLockedError) as info:
            await second.__aenter__()
        assert str(tmp_path) in str(info.value)
        assert "locked" in str(info.value)
        assert isinstance(info.value, ActorqError)
        assert isinstance(info.value, persistence.JournalLockedError)
        assert (await rt.counts())["q"]["waiting"] == 1
    # released on close
    async with Runtime(path=tmp_path) as rt:
        assert (await rt.counts())["q"]["waiting"] == 1


def _flip_middle_byte(folder: Path) -> tuple[Path, bytes, int]:
    (segment,) = [p for p in folder.iterdir() if p.name.startswith("journal-")]
    data = bytearray(segment.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0x40
    segment.write_bytes(bytes(data))
    return segment, bytes(data), middle


async def test_a_flipped_byte_mid_journal_is_an_error_naming_file_offset_and_seq(
    tmp_path: Path,
) -> None:
    async with Runtime(path=tmp_path) as rt:
        q = rt.queue("q")
        for i in range(10):
            await q.add("x", {"i": i})
    frames = list(persistence.iter_frames(tmp_path))
    segment, data, middle = _flip_middle_byte(tmp_path)
    with pytest.raises(JournalCorruptError) as info:
        async with Runtime(path=tmp_path):
            pass
    err = info.value
    assert err.file == str(segment)
    assert 0 < err.offset <= middle
    assert 1 < err.expected_seq < len(frames)
    message = str(err)
    assert str(segment) in message
    assert f"offset {err.offset}" in message
    assert f"expected seq {err.expected_seq}" in message
    assert isinstance(err, persistence.CorruptJournalError)
    # the folder was left as it was (nothing cut) and is not locked
    assert segment.read_bytes() == data
    report = persistence.verify(tmp_path)
    assert not report.ok


async def test_an_fsync_failure_stops_the_runtime_and_acknowledges_nothing_more() -> None:
    sim = persistence.SimFileSystem()
    changelog = open_changelog("/data", fs=sim)
    acked: list[int] = []
    heard: list[BaseException] = []
    # The runtime stopped loudly: the journal error itself comes out of the block (not a
    # group, not a cancellation).
    with pytest.raises(JournalFailedError, match="fsync"):
        async with Runtime(journal=changelog) as rt:
            q = rt.queue("q")
            for i in range(3):
                acked.append((await q.add("x", {"i": i})).id)
            sim.fail_next_fsync()
            # The caller waiting on the failed batch and every later caller hear that the
            # runtime stopped, and why: never a bare CancelledError.
            for i in (3, 4):
                with pytest.raises(RuntimeClosedError) as info:
                    await q.add("x", {"i": i})
                assert isinstance(info.value.__cause__, JournalFailedError)
                heard.append(info.value)
    assert len(heard) == 2 and "JournalFailedError" in str(heard[0])
    assert changelog.failed
    # What was acknowledged survives a crash right now; nothing after it was acknowledged.
    sim.crash()
    reopened = open_changelog("/data", fs=sim)
    core = CoreState()
    for change in reopened.replay():
        core.apply_change(change)
    reopened.close()
    assert sorted(core.jobs) == acked


async def test_interval_and_never_policies_round_trip(tmp_path: Path) -> None:
    for policy in ("interval", "never"):
        folder = tmp_path / policy
        async with Runtime(path=folder, fsync=policy) as rt:
            q = rt.queue("q")

            async def work(job: Job) -> int:
                return int(job.data) * 2

            rt.worker(q, work, concurrency=3)
            jobs = await q.add_bulk([{"name": "x", "data": i} for i in range(50)])
            for job in jobs:
                await job.wait_until_finished()
            live = rt._core.snapshot()
        core, _ = replay_folder(folder)
        assert core.snapshot() == live


def test_open_changelog_validates_its_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        open_changelog(tmp_path, fsync="sometimes")
    with pytest.raises(ValueError, match="snapshot_bytes"):
        open_changelog(tmp_path, snapshot_bytes=0)
    with pytest.raises(ValueError, match="sync_interval"):
        open_changelog(tmp_path, sync_interval=0)


def test_wants_snapshot_after_snapshot_bytes(tmp_path: Path) -> None:
    changelog = open_changelog(tmp_path, snapshot_bytes=1000)
    try:
        list(changelog.replay())
        assert not changelog.wants_snapshot()
        for i in range(20):
            anyio.run(changelog.commit, [("queue", f"q{i}", {"paused": False})])
        assert changelog.wants_snapshot()
        anyio.run(changelog.snapshot, [("queue", "q", {"paused": False})])
        assert not changelog.wants_snapshot()
    finally:
        changelog.close()


# ---------------------------------------------------------------------- codec

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=_json_values, progress=st.none() | _json_values)
def test_payload_bytes_survive_the_codec_byte_for_byte(value: Any, progress: Any) -> None:
    data = orjson.dumps(value)
    prog = None if progress is None else orjson.dumps(progress)
    rec = JobRecord(
        id=1,
        name="n",
        queue="q",
        data=data,
        state=JobState.ACTIVE,
        priority=0,
        tags=("a",),
        run_at=None,
        attempts=2,
        created_at=0.5,
        progress=prog,
        return_value=b"null",
        backoff=Backoff.fixed(1.0, max_delay=math.inf),
        remove_on_complete=Retention(count=3, age=60.0),
    )
    changes = [("add", rec.fields()), ("set", 1, {"progress": prog, "data": data, "logs": ()})]
    decoded = decode_batch(encode_batch(changes))
    assert decoded[1] == changes[1]
    # an add leaves its defaults out; the record it rebuilds is the same
    fields = JobRecord.from_fields(decoded[0][1]).fields()
    assert fields == changes[0][1]
    assert fields["data"] == data
    assert fields["progress"] == prog
    assert fields["return_value"] == b"null"
    assert type(fields["state"]) is JobState
    assert type(fields["tags"]) is tuple
    assert fields["backoff"] == rec.backoff


def test_unknown_fields_are_dropped_and_newer_versions_refused() -> None:
    payload = orjson.dumps(
        {
            "v": 1,
            "c": [
                ["add", {"id": 1, "name": "n", "queue": "q", "data": None, "state": "waiting",
                         "priority": 0, "tags": [], "run_at": None, "attempts": 1,
                         "created_at": 0.0, "retired_field": 5}],
                ["set", 1, {"retired_field": 6, "priority": 2}],
            ],
        }
    )  # fmt: skip
    (add, set_) = decode_batch(payload)
    assert "retired_field" not in add[1]
    assert add[1]["data"] == b"null"
    assert set_ == ("set", 1, {"priority": 2})
    with pytest.raises(PayloadError, match="newer actorq"):
        decode_batch(orjson.dumps({"v": SCHEMA_VERSION + 1, "c": []}))


def test_a_parents_children_survive_the_codec() -> None:
    children = {7: ("processed", b'{"a":1}'), 8: ("failed", "boom"), 9: ("pending", None)}
    changes = [("set", 3, {"children": children, "state": JobState.WAITING_CHILDREN})]
    assert decode_batch(encode_batch(changes)) == changes
    assert type(decode_batch(encode_batch(changes))[0][2]["children"][7][1]) is bytes


async def test_never_runs_commands_inline_and_still_snapshots_as_the_journal_grows(
    tmp_path: Path,
) -> None:
    # Under "never" (and "interval") a commit never waits, so commands run inline in the
    # caller's task; the snapshot the growing journal wants is still taken, by the loop.
    changelog = open_changelog(tmp_path, fsync="never", snapshot_bytes=4000)
    assert not changelog.waits
    async with Runtime(journal=changelog) as rt:
        q = rt.queue("q")
        for i in range(300):
            await q.add("x", i)
        live = rt._core.snapshot()
        assert rt.statistics().inline_batches >= 250  # all but the snapshots loop
    assert any(name.endswith(".snap") for name in os.listdir(tmp_path)), "no snapshot taken"
    core, _ = replay_folder(tmp_path)
    assert core.snapshot() == live


def test_always_does_not_run_commands_inline(tmp_path: Path) -> None:
    changelog = open_changelog(tmp_path, fsync="always")
    try:
        assert changelog.waits  # its commit waits for the fsync
    finally:
        changelog.close()


async def test_a_failed_write_under_a_manual_loop_stops_the_runtime() -> None:
    # At `fsync="never"` (and "interval") commands commit inline, the manual loop's finish
    # included: a write that fails there must stop the runtime as it does on the loop, not
    # leave a job completed in memory and missing from the journal while the loop goes on.
    sim = persistence.SimFileSystem()
    changelog = open_changelog("/data", fs=sim, fsync="never")
    heard: list[BaseException] = []
    with pytest.raises(JournalFailedError):
        async with Runtime(journal=changelog) as rt:
            q = rt.queue("q")
            w = rt.worker(q)
            await q.add_bulk([{"name": "x", "data": i} for i in range(10)])
            job = await w.get_next_job("t")
            assert job is not None
            job = await job.move_to_completed(None, "t")
            assert job is not None
            sim.fail_next_write()
            with pytest.raises(RuntimeClosedError) as info:
                await job.move_to_completed(None, "t")
            # As on the loop (the fsync test above): the caller hears the runtime died, and why.
            assert isinstance(info.value.__cause__, JournalFailedError)
            with pytest.raises(RuntimeClosedError) as later:
                await q.counts()
            heard += [info.value, later.value]
    assert len(heard) == 2 and isinstance(heard[1].__cause__, JournalFailedError)
    assert changelog.failed


class _RefusesCommits(MemoryChangeLog):
    """A log holding an earlier life's batches whose every commit fails."""

    def commit(self, changes: list[Any]) -> None:
        raise OSError("injected: the journal refuses the commit")


async def test_a_runtime_whose_first_commit_fails_as_it_starts_closes_what_it_started() -> None:
    # Stalling the job the last life held is the new life's first commit; when it fails,
    # entering the runtime raises and leaves no task group open behind it.
    log = MemoryChangeLog()
    async with Runtime(journal=log) as rt:
        started, release = anyio.Event(), anyio.Event()

        async def hold(job: Job) -> None:
            started.set()
            await release.wait()

        rt.worker("q", hold)
        job = await rt.queue("q").add("held", None)
        await started.wait()
        held = list(log.batches)  # the job is active in them
        release.set()
    broken = _RefusesCommits()
    broken.batches = held
    with pytest.raises(RuntimeClosedError, match="refuses the commit"):
        with anyio.CancelScope():  # a task group left open inside could not leave it
            async with Runtime(journal=broken):
                pass  # never entered
    again = MemoryChangeLog()
    again.batches = held
    async with Runtime(journal=again) as rt:  # the same task goes on, the job stalled once
        assert rt._core.jobs[job.id].stalled_counter == 1
