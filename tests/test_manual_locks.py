"""Manual processing: locks, lock expiry (stalls), `extend_lock`, `LockError`, and the stalled
checker's shape (a sorted index of manual locks, no periodic scan)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime

from actorq import (
    Event,
    EventStream,
    Job,
    JobFailed,
    JobStalled,
    JobState,
    LockError,
    Runtime,
    VirtualClock,
    Worker,
)
from actorq._core.state import STALLED_LIMIT

#: Why a test stays off the remote kind.
READS_CORE = "compares the core's own record before and after the refused call"
SAME_BATCH = "needs the call in the same batch as the lock's expiry; a client's comes a read later"


def drain(events: EventStream) -> list[Event]:
    return events.drain_nowait()


def fields(rt: Runtime, job_id: int) -> dict[str, Any]:
    return rt._core.jobs[job_id].fields()


async def fetch(worker: Worker, token: str) -> Job:
    job = await worker.get_next_job(token)
    assert job is not None
    return job


# ---------------------------------------------------------------- stalls


async def test_lock_expiry_stalls_then_fails_over_the_limit(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        added = await q.add("j", {"n": 1})
        async with rt.events() as events:
            job = await fetch(w, "t1")
            assert job.id == added.id
            assert job.state is JobState.ACTIVE
            assert job.lock_token == "t1"
            assert job.lock_expires_at == 30.0
            assert (job.attempts_started, job.attempts_made, job.stalled_counter) == (1, 0, 0)

            await clock.advance_to(29.999)
            assert job.state is JobState.ACTIVE  # not a moment early
            await clock.advance_to(30)
            assert clock.now() == 30.0
            assert job.state is JobState.WAITING
            assert job.lock_token is None
            assert job.lock_expires_at is None
            assert (job.attempts_started, job.attempts_made, job.stalled_counter) == (1, 0, 1)
            stalls = [e for e in drain(events) if isinstance(e, JobStalled)]
            assert stalls == [JobStalled(job.id, "m", "j", 1)]

            again = await fetch(w, "t2")
            assert again.id == job.id
            assert again.lock_token == "t2"
            assert again.lock_expires_at == 60.0
            assert again.attempts_started == 2

            await clock.advance(30)
            assert job.state is JobState.FAILED
            assert job.failed_reason == STALLED_LIMIT == "job stalled more than allowable limit"
            assert job.finished_at == 60.0
            # As implemented (BullMQ increments the counter, then compares it with
            # max_stalled_count=1): the second stall is the one over the limit.
            assert (job.attempts_started, job.attempts_made, job.stalled_counter) == (2, 1, 2)
            seen = drain(events)
            assert [e for e in seen if isinstance(e, JobFailed)] == [
                JobFailed(job.id, "m", "j", STALLED_LIMIT)
            ]
            assert not [e for e in seen if isinstance(e, JobStalled)]  # final failure: none
        assert await w.get_next_job("t3") is None
        with anyio.fail_after(5), pytest.raises(Exception, match="allowable limit"):
            await job.wait_until_finished()


async def test_docstrings_state_the_stall_rule() -> None:
    doc = Worker.__doc__ or ""
    assert "lock_duration" in doc
    assert "stalled more than\n    `max_stalled_count` times" in doc
    assert "job stalled more than allowable limit" in doc
    assert "stall when a lock expires" in (Runtime.worker.__doc__ or "")


async def test_max_stalled_count_zero_fails_at_the_first_expiry(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=10, max_stalled_count=0)
        await q.add("j")
        job = await fetch(w, "t")
        await clock.advance(10)
        assert job.state is JobState.FAILED
        assert job.failed_reason == STALLED_LIMIT
        assert (job.attempts_started, job.attempts_made, job.stalled_counter) == (1, 1, 1)


async def test_max_stalled_count_two_allows_two_stalls(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=5, max_stalled_count=2)
        await q.add("j")
        for stalls in (1, 2):
            job = await fetch(w, "t")
            await clock.advance(5)
            assert job.state is JobState.WAITING
            assert job.stalled_counter == stalls
        job = await fetch(w, "t")
        await clock.advance(5)
        assert job.state is JobState.FAILED
        assert (job.attempts_started, job.attempts_made, job.stalled_counter) == (3, 1, 3)


async def test_stall_detected_with_autojump_clock(make_runtime: MakeRuntime) -> None:
    # The default VirtualClock jumps to the expiry by itself when nothing else happens.
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        await q.add("j")
        async with rt.events() as events:
            job = await fetch(w, "t")
            with anyio.fail_after(5):
                async for event in events:
                    if isinstance(event, JobStalled):
                        break
        assert event == JobStalled(job.id, "m", "j", 1)
        assert rt.clock.now() == 30.0
        assert job.state is JobState.WAITING
        with anyio.fail_after(5), pytest.raises(TimeoutError):
            await job.wait_until_finished(timeout=100)
        assert rt.clock.now() == 130.0
        assert job.state is JobState.WAITING and job.stalled_counter == 1


# ---------------------------------------------------------------- extend_lock


async def test_extend_lock_keeps_the_job_past_its_old_expiry(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        await q.add("j")
        async with rt.events() as events:
            job = await fetch(w, "t")
            await clock.advance(20)
            await job.extend_lock("t", 40)  # until 20 + 40 = 60
            assert job.lock_expires_at == 60.0
            await clock.advance_to(35)  # past the original expiry
            assert job.state is JobState.ACTIVE
            assert job.stalled_counter == 0
            await clock.advance_to(59.999)
            assert job.state is JobState.ACTIVE
            assert not [e for e in drain(events) if isinstance(e, JobStalled)]
            await clock.advance_to(60)  # the new expiry
            assert job.state is JobState.WAITING
            assert job.stalled_counter == 1
            assert [e for e in drain(events) if isinstance(e, JobStalled)] == [
                JobStalled(job.id, "m", "j", 1)
            ]


async def test_extend_lock_then_finish_never_stalls() -> None:
    clock = VirtualClock(autojump=False)
    async with Runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=10)
        await q.add("j")
        job = await fetch(w, "t")
        for _ in range(5):
            await clock.advance(8)
            await job.extend_lock("t", 10)
        assert clock.now() == 40.0
        assert await job.move_to_completed("ok", "t", fetch_next=False) is None
        await clock.advance(100)
        assert job.state is JobState.COMPLETED
        assert job.return_value == "ok"
        assert job.stalled_counter == 0
        assert len(rt._core.locks) == 0


async def test_extend_lock_can_shorten_the_lock(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        await q.add("j")
        job = await fetch(w, "t")
        await job.extend_lock("t", 1)  # "for `duration` more seconds from now"
        assert job.lock_expires_at == 1.0
        await clock.advance(1)
        assert job.state is JobState.WAITING


# ---------------------------------------------------------------- LockError


@pytest.mark.runtimes("local", "postgresql", why=READS_CORE)
async def test_wrong_token_raises_lock_error_and_changes_nothing(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock(autojump=False)) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        await q.add("j")
        job = await fetch(w, "holder")
        before = fields(rt, job.id)
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: job.move_to_completed("v", "thief"),
            lambda: job.move_to_failed(ValueError("x"), "thief"),
            lambda: job.extend_lock("thief", 100),
            lambda: job.move_to_delayed(50, token="thief"),
            lambda: job.move_to_waiting_children("thief"),
        ]
        for call in calls:
            with pytest.raises(LockError) as info:
                await call()
            assert info.value.job_id == job.id
            assert str(info.value) == (
                f"lock error on job {job.id}: token 'thief' does not hold the lock "
                "(held by 'holder')"
            )
            assert fields(rt, job.id) == before
        assert await rt.counts() == {"m": {**_zero(), "active": 1}}


@pytest.mark.runtimes("local", "postgresql", why=READS_CORE)
async def test_not_active_raises_lock_error_naming_the_state(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock(autojump=False)) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        waiting = await q.add("j")
        before = fields(rt, waiting.id)
        with pytest.raises(LockError) as info:
            await waiting.move_to_completed("v", "t")
        assert info.value.job_id == waiting.id
        assert str(info.value) == (
            f"lock error on job {waiting.id}: job is waiting, not active; complete needs its lock"
        )
        assert fields(rt, waiting.id) == before

        job = await fetch(w, "t")
        assert await job.move_to_completed("v", "t", fetch_next=False) is None
        done = fields(rt, job.id)
        finishing: list[tuple[Callable[[], Awaitable[object]], str]] = [
            (lambda: job.move_to_completed("again", "t"), "complete"),
            (lambda: job.move_to_failed("late", "t"), "fail"),
            (lambda: job.extend_lock("t", 5), "extend_lock"),
        ]
        for call, command in finishing:
            with pytest.raises(LockError) as info:
                await call()
            assert str(info.value) == (
                f"lock error on job {job.id}: job is completed, not active; "
                f"{command} needs its lock"
            )
            assert fields(rt, job.id) == done
        assert job.return_value == "v"
        assert job.attempts_made == 1


@pytest.mark.runtimes("local", "postgresql", why=SAME_BATCH)
async def test_expired_lock_raises_lock_error_naming_the_expiry(make_runtime: MakeRuntime) -> None:
    # A finishing call that reaches the scheduler in the same batch as the expiry sees the
    # lock expired (the stall is applied after the batch's commands).
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        await q.add("j")
        job = await fetch(w, "t")
        await clock.sleep_until(30.0)
        with pytest.raises(LockError) as info:
            await job.move_to_completed("late", "t")
        assert info.value.job_id == job.id
        assert str(info.value) == f"lock error on job {job.id}: lock of token 't' expired at 30.0"
        # Nothing the call did: not completed, no attempt counted; the expiry stalled it.
        assert job.state is JobState.WAITING
        assert job.return_value is None
        assert (job.attempts_started, job.attempts_made, job.stalled_counter) == (1, 0, 1)


@pytest.mark.runtimes("local", "postgresql", why=READS_CORE)
async def test_finishing_after_the_stall_raises_lock_error(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        await q.add("j")
        job = await fetch(w, "late")
        await clock.advance(31)
        before = fields(rt, job.id)
        with pytest.raises(LockError, match=rf"job {job.id}: job is waiting, not active"):
            await job.move_to_completed("v", "late")
        assert fields(rt, job.id) == before
        newer = await fetch(w, "newer")
        with pytest.raises(LockError, match=r"token 'late' does not hold the lock \(held by "):
            await job.move_to_failed("x", "late")
        assert newer.state is JobState.ACTIVE and newer.lock_token == "newer"
        assert newer.attempts_made == 0


def _zero() -> dict[str, int]:
    return {state.value: 0 for state in JobState}


# ---------------------------------------------------------------- the checker's shape


async def test_stall_checking_needs_no_processor_and_indexes_only_manual_locks() -> None:
    clock = VirtualClock(autojump=False)

    async def blocked(job: Job) -> None:
        await clock.sleep_until(10_000)  # a processor asleep on the clock lets time jump

    async with Runtime(clock=clock, shutdown_timeout=1) as rt:
        mq, pq = rt.queue("manual"), rt.queue("proc")
        manual = rt.worker(mq, lock_duration=30, stalled_interval=1000)
        await mq.add_bulk([{"name": "m"} for _ in range(5)])
        held = [await fetch(manual, f"t{i}") for i in range(5)]
        for i, job in enumerate(held):
            await job.extend_lock(f"t{i}", 10 * (i + 1))  # expiries 10, 20, 30, 40, 50
        rt.worker(pq, blocked, concurrency=3)
        proc_jobs = await pq.add_bulk([{"name": "p"} for _ in range(3)])
        await clock.run_until_idle()
        assert all(j.state is JobState.ACTIVE for j in proc_jobs)
        assert all(j.lock_expires_at is None for j in proc_jobs)
        assert all(j.lock_token is not None for j in proc_jobs)
        core = rt._core
        assert list(core.locks) == [(10.0 * (i + 1), job.id) for i, job in enumerate(held)]
        assert core.next_due() == 10.0

        stalled: list[int] = []
        real_stall = core._stall

        def counting_stall(rec: Any, now: float) -> None:
            stalled.append(rec.id)
            real_stall(rec, now)

        core._stall = counting_stall  # type: ignore[method-assign]
        start = rt.statistics().loop_batches
        await clock.advance(25)  # 10 and 20 expired; detection is at the expiry
        assert stalled == [held[0].id, held[1].id]
        assert [j.state for j in held] == [JobState.WAITING] * 2 + [JobState.ACTIVE] * 3
        assert [j.stalled_counter for j in held] == [1, 1, 0, 0, 0]
        assert rt.statistics().loop_batches - start == 2  # a tick per expiry, no periodic scan
        assert list(core.locks) == [(10.0 * (i + 1), job.id) for i, job in enumerate(held)][2:]
        assert all(j.state is JobState.ACTIVE for j in proc_jobs)  # never expire
        await clock.advance(1000)
        assert len(stalled) == 5
        assert rt.statistics().loop_batches - start == 5
        assert all(j.state is JobState.ACTIVE for j in proc_jobs)
        assert all(j.stalled_counter == 0 for j in proc_jobs)
        await clock.advance_to(10_000)
        assert all(j.state is JobState.COMPLETED for j in proc_jobs)
