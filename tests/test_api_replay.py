"""Replay: the change log rebuilds exactly the live state, and a new runtime resumes from it
(locally, through a client whose host restarts, and on PostgreSQL).

The tests on Runtime(...) compare the core's state with a replay of its change log: the
Runtime's own."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from replay_workload import workload
from runtimes import MakeRuntime, RuntimeLives

from actorq import Job, JobState, MemoryChangeLog, Runtime, VirtualClock
from actorq._core import CoreState


def replayed(log: MemoryChangeLog) -> CoreState:
    core = CoreState()
    for change in log.replay():
        core.apply_change(change)
    return core


async def test_replaying_the_log_rebuilds_the_live_state() -> None:
    clock = VirtualClock(autojump=False)
    log = MemoryChangeLog()
    async with Runtime(journal=log, clock=clock, seed=7) as rt:
        jobs = await workload(rt, clock, advance=100)
        live_snapshot = rt._core.snapshot()
        live_index = rt._core.index_view()
        core = replayed(log)
        assert core.snapshot() == live_snapshot
        assert core.index_view() == live_index
        # sanity: the workload did reach the states it meant to
        assert jobs["flaky"].attempts_made == 3
        assert jobs["fatal"].state is JobState.FAILED
        assert jobs["far"].state is JobState.DELAYED
        assert jobs["later"].processed_at == 30.0
        assert jobs["parked-delayed"].state is JobState.WAITING
        assert len(live_snapshot["jobs"]) >= 10
    # and still equal after shutdown
    core = replayed(log)
    assert core.snapshot() == rt._core.snapshot()
    assert core.index_view() == rt._core.index_view()


async def test_replay_matches_at_every_batch_boundary() -> None:
    """Every prefix of whole batches is a state the live runtime was in."""
    clock = VirtualClock()
    log = MemoryChangeLog()
    snapshots: list[tuple[int, dict[str, Any]]] = []
    async with Runtime(journal=log, clock=clock) as rt:
        q = rt.queue("b")

        async def work(job: Job) -> int:
            return int(job.data) + 1

        await q.pause()
        for i in range(5):
            await q.add("x", i, priority=i % 2, lifo=i == 3)
            snapshots.append((len(log.batches), rt._core.snapshot()))
        rt.worker(q, work)
        await q.resume()
        await clock.run_until_idle()
        snapshots.append((len(log.batches), rt._core.snapshot()))
    for n_batches, snap in snapshots:
        core = CoreState()
        for batch in log.batches[:n_batches]:
            for change in batch:
                core.apply_change(change)
        assert core.snapshot() == snap


@pytest.mark.runtimes("local", "remote", "postgresql")
async def test_second_runtime_on_the_same_log_starts_with_the_same_jobs(
    runtime_lives: RuntimeLives,
) -> None:
    clock = VirtualClock(autojump=False)
    async with runtime_lives(clock=clock, seed=7) as life:
        async with life() as rt:
            jobs = await workload(rt, clock, advance=100)
            counts = await rt.counts()
            snapshot = rt._core.snapshot() if isinstance(rt, Runtime) else None
            last_id = max(job.id for job in jobs.values())

        async with life() as rt2:  # on the same clock: the time goes on from the stop
            assert await rt2.counts() == counts
            if snapshot is not None:  # the engine's whole state, where the test holds it
                assert rt2._core.snapshot() == snapshot
            work, parked = rt2.queue("work"), rt2.queue("parked")
            old = await work.get_job(jobs["plain"].id)
            assert old is not None
            assert old.state is JobState.COMPLETED
            assert old.return_value == jobs["plain"].return_value
            steps = await work.get_job(jobs["steps"].id)
            assert steps is not None
            assert steps.data == {"kind": "steps", "seen": True}
            assert steps.progress == 50
            assert steps.logs == ["half"]
            assert [j.id for j in await parked.get_jobs("waiting")] == [
                jobs[k].id for k in ("p2", "p3", "p4", "parked-delayed")
            ]
            # the idempotency keys survived
            dup = await parked.add("dup", {"i": 99}, idempotency_key="k-2")
            assert dup.id == jobs["p4"].id
            assert dup.data == {"i": 4}
            # new ids continue after the old ones
            new = await parked.add("new")
            assert new.id > last_id

            # the replayed jobs run when given a worker
            ran: list[int] = []

            async def record(job: Job) -> None:
                ran.append(job.id)

            rt2.worker(parked, record)
            await parked.resume()
            with anyio.fail_after(5):
                for key in ("p2", "p3", "p4", "parked-delayed"):
                    handle = await parked.get_job(jobs[key].id)
                    assert handle is not None
                    await handle.wait_until_finished()
            assert ran[:4] == [jobs[k].id for k in ("p2", "p3", "p4", "parked-delayed")]


async def test_null_journal_replays_nothing(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("n")
        await q.pause()
        await q.add("x")
    async with make_runtime(clock=VirtualClock()) as rt2:
        assert await rt2.counts() == {}
