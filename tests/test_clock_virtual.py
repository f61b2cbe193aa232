"""What a test relies on from `VirtualClock`, as trio's `MockClock` or Temporal's
time-skipping environment would give it: time never moves backwards nor past an explicit
target, an explicit advance moves time whatever user code awaits, autojump moves it only when
the runtime is idle, and one clock serves one runtime after another; locally and through a
client (whose host shares the clock)."""

from __future__ import annotations

import anyio
import pytest
from runtimes import MakeRuntime

from actorq import Job, JobFailedError, JobState, VirtualClock


async def test_advance_with_autojump_never_goes_back_nor_past_its_target(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()  # autojump on
    seen: list[float] = []
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")

        async def process(job: Job) -> None:
            seen.append(clock.now())

        rt.worker(q, process)
        await q.add("later", delay=3600)
        await clock.advance(10)
        assert clock.now() == 10.0  # autojump did not run the job at 3600 meanwhile
        assert seen == []
        job = await q.add("soon", delay=5)
        await job.wait_until_finished()  # autojump: returns at virtual 15
        assert seen[0] == 15.0
    assert seen == sorted(seen)


async def test_advance_moves_time_while_a_processor_awaits_something_else(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(autojump=False)
    release = anyio.Event()
    async with make_runtime(clock=clock, shutdown_timeout=1) as rt:
        q = rt.queue("q")

        async def process(job: Job) -> None:
            await release.wait()  # an outside event the test sets later

        rt.worker(q, process)
        await q.add("held")
        with anyio.fail_after(5):  # real seconds: the advance must not hang
            await clock.advance(100)
        assert clock.now() == 100.0
        release.set()


async def test_a_job_timeout_fires_at_its_virtual_deadline_under_advance(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(autojump=False)
    never = anyio.Event()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")

        async def process(job: Job) -> None:
            await never.wait()

        rt.worker(q, process)
        job = await q.add("slow", timeout=5)
        with anyio.fail_after(5):
            await clock.advance(4.5)
            assert job.state is JobState.ACTIVE
            await clock.advance(1)
        assert job.state is JobState.FAILED
        assert job.failed_reason == "job timed out after 5.0 s"
        assert job.finished_at == 5.0
        with pytest.raises(JobFailedError):
            await job.wait_until_finished()


async def test_a_clock_serves_a_second_runtime_after_the_first_closed(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as first:
        job = await first.queue("q").add("a", delay=5)
        rt_worker = first.worker("q", _noop)
        await job.wait_until_finished()
        await rt_worker.close()
    assert clock.now() == 5.0
    async with make_runtime(clock=clock) as second:
        waiting = await second.queue("q").add("never-processed")
        with anyio.fail_after(5), pytest.raises(TimeoutError):
            await waiting.wait_until_finished(timeout=5)
        assert clock.now() == 10.0


async def _noop(job: Job) -> None:
    return None


async def test_autojump_does_not_jump_under_a_processor_awaiting_something_else(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    go = anyio.Event()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")

        async def process(job: Job) -> None:
            await go.wait()

        rt.worker(q, process)
        await q.add("busy")
        await q.add("later", delay=60)
        await anyio.sleep(0.05)  # real time: autojump had every chance
        assert clock.now() == 0.0
        go.set()


async def test_a_manual_lock_expires_under_autojump_while_its_holder_awaits_outside(
    make_runtime: MakeRuntime,
) -> None:
    # The decision documented in docs/testing.md: a lock held by a manual consumer is a timer
    # like any other. Under autojump, time jumps to its expiry once the runtime is idle,
    # whatever the consumer awaits; with autojump=False it holds until an explicit advance.
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        w = rt.worker(q, lock_duration=30)
        await q.add("manual")
        job = await w.get_next_job("t")
        assert job is not None
        other = await q.add("after", delay=100)
        with anyio.fail_after(5), pytest.raises(TimeoutError):
            await other.wait_until_finished(timeout=1000)  # nobody processes it
    assert job.stalled_counter == 1
    assert job.state is JobState.WAITING


async def test_a_manual_lock_holds_without_autojump_until_advanced(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        w = rt.worker(q, lock_duration=30)
        await q.add("manual")
        job = await w.get_next_job("t")
        assert job is not None
        await anyio.sleep(0.05)
        assert job.state is JobState.ACTIVE
        await clock.advance(29)
        await job.move_to_completed(None, "t", fetch_next=False)
        assert job.state is JobState.COMPLETED
