"""Restart: jobs that were active when the previous runtime stopped count as stalled, whether a
manual consumer or a processor held them (through a client: the host restarts, the client
reconnects)."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from runtimes import RuntimeLives

from actorq import Job, JobState, Runtime, VirtualClock
from actorq._core.state import STALLED_LIMIT

# Not on PostgreSQL: a leased journal's next leader lets the jobs the last one held stall as
# their locks expire, not at start (docs/postgresql.md; tests/test_pg_takeover.py).

#: Why the processor tests stay off the remote kind.
HELD_BY_A_CLIENT = (
    "a processor that never returns, stopped by the runtime's shutdown_timeout: a client's "
    "processor runs in the client, which a host's stop does not end"
)


async def hold_one_manually(life: Any, max_stalled_count: int = 1) -> int:
    async with life() as rt:
        q = rt.queue("m")
        w = rt.worker(q, max_stalled_count=max_stalled_count)
        if not any((await q.counts()).values()):
            await q.add("j", {"n": 1})
        job = await w.get_next_job("t")
        assert job is not None
        assert job.state is JobState.ACTIVE
        return int(job.id)


async def test_manual_job_active_at_restart_is_back_in_waiting_stalled_once(
    runtime_lives: RuntimeLives, caplog: pytest.LogCaptureFixture
) -> None:
    async with runtime_lives(clock=VirtualClock()) as life:
        job_id = await hold_one_manually(life)
        caplog.set_level(logging.WARNING, logger="actorq")
        async with life() as rt:
            job = await rt.queue("m").get_job(job_id)
            assert job is not None
            assert job.state is JobState.WAITING
            assert job.stalled_counter == 1
            assert (job.attempts_started, job.attempts_made) == (1, 0)
            assert job.lock_token is None and job.lock_expires_at is None
            assert job.data == {"n": 1}
            if isinstance(rt, Runtime):  # and the engine holds no lock for it
                assert not rt._core.locks
            # and it can be processed normally
            w = rt.worker("m")
            again = await w.get_next_job("u")
            assert again is not None and again.id == job_id
            assert again.attempts_started == 2
            await again.move_to_completed("ok", "u")
            done = await rt.queue("m").get_job(job_id)
            assert done is not None and done.state is JobState.COMPLETED
    assert "1 jobs that were active at the last stop counted as stalled" in caplog.text


async def test_second_restart_while_held_fails_over_the_limit(
    runtime_lives: RuntimeLives,
) -> None:
    async with runtime_lives(clock=VirtualClock()) as life:
        job_id = await hold_one_manually(life)
        await hold_one_manually(life)  # restart: stalled once, fetched again, left again
        async with life() as rt:
            job = await rt.queue("m").get_job(job_id)
            assert job is not None
            assert job.state is JobState.FAILED
            assert job.failed_reason == STALLED_LIMIT
            assert (job.attempts_started, job.attempts_made, job.stalled_counter) == (2, 1, 2)
            with pytest.raises(Exception, match="allowable limit"):
                await job.wait_until_finished()


async def test_max_stalled_count_zero_fails_at_the_first_restart(
    runtime_lives: RuntimeLives,
) -> None:
    async with runtime_lives(clock=VirtualClock()) as life:
        job_id = await hold_one_manually(life, max_stalled_count=0)
        async with life() as rt:
            job = await rt.queue("m").get_job(job_id)
            assert job is not None
            assert job.state is JobState.FAILED
            assert job.failed_reason == STALLED_LIMIT
            assert (job.attempts_started, job.attempts_made, job.stalled_counter) == (1, 1, 1)


async def test_restart_stall_is_journaled(runtime_lives: RuntimeLives) -> None:
    async with runtime_lives(clock=VirtualClock()) as life:
        job_id = await hold_one_manually(life)
        async with life():
            pass
        # a third runtime replays the stall itself: the counter does not grow again
        async with life() as rt:
            job = await rt.queue("m").get_job(job_id)
            assert job is not None
            assert job.state is JobState.WAITING
            assert job.stalled_counter == 1


async def _run_processor_until_shutdown(
    life: Any, clock: VirtualClock, max_stalled_count: int
) -> int:
    started = anyio.Event()

    async def hang(job: Job) -> None:
        started.set()
        await clock.sleep(1e9)  # asleep on the clock: shutdown_timeout can pass

    async with life(shutdown_timeout=1) as rt:
        q = rt.queue("p")
        job = await q.add("j")
        rt.worker(q, hang, max_stalled_count=max_stalled_count)
        with anyio.fail_after(5):
            await started.wait()
        assert job.state is JobState.ACTIVE
        assert job.lock_expires_at is None  # a processor's lock renews by itself
        assert job.lock_token is not None
    return int(job.id)


@pytest.mark.runtimes("local", why=HELD_BY_A_CLIENT)
async def test_processor_job_active_at_restart_counts_as_stalled(
    runtime_lives: RuntimeLives,
) -> None:
    clock = VirtualClock()
    async with runtime_lives(clock=clock) as life:
        job_id = await _run_processor_until_shutdown(life, clock, max_stalled_count=1)
        async with life() as rt:
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


@pytest.mark.runtimes("local", why=HELD_BY_A_CLIENT)
async def test_processor_worker_max_stalled_count_applies_at_restart(
    runtime_lives: RuntimeLives,
) -> None:
    clock = VirtualClock()
    async with runtime_lives(clock=clock) as life:
        job_id = await _run_processor_until_shutdown(life, clock, max_stalled_count=0)
        async with life() as rt:
            job = await rt.queue("p").get_job(job_id)
            assert job is not None
            assert job.state is JobState.FAILED, "the worker said max_stalled_count=0"
            assert job.failed_reason == STALLED_LIMIT
            assert job.stalled_counter == 1
