"""Restart: jobs that were active when the previous runtime stopped count as stalled, whether a
manual consumer or a processor held them."""

from __future__ import annotations

import logging

import anyio
import pytest

from actorq import Job, JobState, MemoryChangeLog, Runtime, VirtualClock
from actorq._core.state import STALLED_LIMIT


async def hold_one_manually(log: MemoryChangeLog, max_stalled_count: int = 1) -> int:
    async with Runtime(journal=log, clock=VirtualClock()) as rt:
        q = rt.queue("m")
        w = rt.worker(q, max_stalled_count=max_stalled_count)
        if not rt._core.jobs:
            await q.add("j", {"n": 1})
        job = await w.get_next_job("t")
        assert job is not None
        assert job.state is JobState.ACTIVE
        return job.id


async def test_manual_job_active_at_restart_is_back_in_waiting_stalled_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = MemoryChangeLog()
    job_id = await hold_one_manually(log)
    caplog.set_level(logging.WARNING, logger="actorq")
    async with Runtime(journal=log, clock=VirtualClock()) as rt:
        job = await rt.queue("m").get_job(job_id)
        assert job is not None
        assert job.state is JobState.WAITING
        assert job.stalled_counter == 1
        assert (job.attempts_started, job.attempts_made) == (1, 0)
        assert job.lock_token is None and job.lock_expires_at is None
        assert not rt._core.locks
        assert job.data == {"n": 1}
        # and it can be processed normally
        w = rt.worker("m")
        again = await w.get_next_job("u")
        assert again is not None and again.id == job_id
        assert again.attempts_started == 2
        await again.move_to_completed("ok", "u")
        assert job.state is JobState.COMPLETED
    assert "1 jobs that were active at the last stop counted as stalled" in caplog.text


async def test_second_restart_while_held_fails_over_the_limit() -> None:
    log = MemoryChangeLog()
    job_id = await hold_one_manually(log)
    await hold_one_manually(log)  # restart: stalled once, fetched again, left again
    async with Runtime(journal=log, clock=VirtualClock()) as rt:
        job = await rt.queue("m").get_job(job_id)
        assert job is not None
        assert job.state is JobState.FAILED
        assert job.failed_reason == STALLED_LIMIT
        assert (job.attempts_started, job.attempts_made, job.stalled_counter) == (2, 1, 2)
        with pytest.raises(Exception, match="allowable limit"):
            await job.wait_until_finished()


async def test_max_stalled_count_zero_fails_at_the_first_restart() -> None:
    log = MemoryChangeLog()
    job_id = await hold_one_manually(log, max_stalled_count=0)
    async with Runtime(journal=log, clock=VirtualClock()) as rt:
        job = await rt.queue("m").get_job(job_id)
        assert job is not None
        assert job.state is JobState.FAILED
        assert job.failed_reason == STALLED_LIMIT
        assert (job.attempts_started, job.attempts_made, job.stalled_counter) == (1, 1, 1)


async def test_restart_stall_is_journaled() -> None:
    log = MemoryChangeLog()
    job_id = await hold_one_manually(log)
    async with Runtime(journal=log, clock=VirtualClock()):
        pass
    # a third runtime replays the stall itself: the counter does not grow again
    async with Runtime(journal=log, clock=VirtualClock()) as rt:
        job = await rt.queue("m").get_job(job_id)
        assert job is not None
        assert job.state is JobState.WAITING
        assert job.stalled_counter == 1


async def _run_processor_until_shutdown(log: MemoryChangeLog, max_stalled_count: int) -> int:
    started = anyio.Event()

    clock = VirtualClock()

    async def hang(job: Job) -> None:
        started.set()
        await clock.sleep(1e9)  # asleep on the clock: shutdown_timeout can pass

    async with Runtime(journal=log, clock=clock, shutdown_timeout=1) as rt:
        q = rt.queue("p")
        job = await q.add("j")
        rt.worker(q, hang, max_stalled_count=max_stalled_count)
        with anyio.fail_after(5):
            await started.wait()
        assert job.state is JobState.ACTIVE
        assert job.lock_expires_at is None  # a processor's lock renews by itself
        assert job.lock_token is not None
    return job.id


async def test_processor_job_active_at_restart_counts_as_stalled() -> None:
    log = MemoryChangeLog()
    job_id = await _run_processor_until_shutdown(log, max_stalled_count=1)
    async with Runtime(journal=log, clock=VirtualClock()) as rt:
        job = await rt.queue("p").get_job(job_id)
        assert job is not None
        assert job.state is JobState.WAITING
        assert job.stalled_counter == 1
        assert job.attempts_started == 1

        async def ok(job: Job) -> str:
            return "done"

        rt.worker("p", ok)
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == "done"
        assert job.attempts_started == 2 and job.stalled_counter == 1


async def test_processor_worker_max_stalled_count_applies_at_restart() -> None:
    log = MemoryChangeLog()
    job_id = await _run_processor_until_shutdown(log, max_stalled_count=0)
    async with Runtime(journal=log, clock=VirtualClock()) as rt:
        job = await rt.queue("p").get_job(job_id)
        assert job is not None
        assert job.state is JobState.FAILED, "the worker said max_stalled_count=0"
        assert job.failed_reason == STALLED_LIMIT
        assert job.stalled_counter == 1
