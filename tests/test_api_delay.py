"""Delayed jobs: `delay=` and `run_at=` start exactly at their due time, never early."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
from runtimes import MakeRuntime

from actorq import Job, JobState, VirtualClock


def recorder(clock: VirtualClock, starts: dict[int, float]) -> object:
    async def record(job: Job) -> float:
        starts[job.id] = clock.now()
        return clock.now()

    return record


async def test_delay_runs_exactly_at_due_time_not_before(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("d")
        starts: dict[int, float] = {}
        rt.worker(q, recorder(clock, starts))  # type: ignore[arg-type]
        job = await q.add("later", {"x": 1}, delay=10)
        assert job.state is JobState.DELAYED
        assert job.run_at == 10.0
        assert (await q.counts())["delayed"] == 1

        await clock.advance(9.999)
        assert starts == {}
        assert job.state is JobState.DELAYED
        assert [j.id for j in await q.get_jobs("delayed")] == [job.id]

        await clock.advance(0.001)
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == 10.0
        assert starts == {job.id: 10.0}
        assert job.processed_at == 10.0
        assert job.created_at == 0.0


async def test_run_at_number_runs_at_that_time(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(start=1000.0)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("d")
        starts: dict[int, float] = {}
        rt.worker(q, recorder(clock, starts))  # type: ignore[arg-type]
        job = await q.add("at", run_at=1234.5)
        assert job.state is JobState.DELAYED
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == 1234.5
        assert job.processed_at == 1234.5
        assert starts[job.id] == 1234.5


async def test_run_at_datetime_runs_at_that_instant(make_runtime: MakeRuntime) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    clock = VirtualClock(start=start.timestamp())
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("d")
        starts: dict[int, float] = {}
        rt.worker(q, recorder(clock, starts))  # type: ignore[arg-type]
        due = start + timedelta(hours=24)
        job = await q.add("tomorrow", run_at=due)
        assert job.state is JobState.DELAYED
        assert job.run_at == due.timestamp()
        with anyio.fail_after(5):
            await job.wait_until_finished()
        assert job.processed_at == due.timestamp()
        assert starts[job.id] == due.timestamp()


async def test_past_run_at_and_zero_delay_are_waiting_at_once(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(start=500.0, autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("d")
        await q.pause()
        past = await q.add("past", run_at=100.0)
        zero = await q.add("zero", delay=0)
        assert past.state is JobState.WAITING
        assert zero.state is JobState.WAITING
        assert (await q.counts())["delayed"] == 0


async def test_many_delays_each_run_at_their_own_due_time_in_due_order(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("d")
        starts: dict[int, float] = {}
        order: list[int] = []

        async def record(job: Job) -> None:
            starts[job.id] = clock.now()
            order.append(job.id)

        rt.worker(q, record, concurrency=2)
        delays = [30, 5, 60, 5, 0.5, 3600, 12]
        jobs = [await q.add("j", i, delay=d) for i, d in enumerate(delays)]
        assert all(j.state is JobState.DELAYED for j in jobs)
        with anyio.fail_after(5):
            for job in jobs:
                await job.wait_until_finished()
        for job, delay in zip(jobs, delays, strict=True):
            assert starts[job.id] == delay
            assert job.processed_at == delay
        due = {j.id: d for j, d in zip(jobs, delays, strict=True)}
        assert order == sorted(due, key=lambda job_id: (due[job_id], job_id))
        assert clock.now() == 3600


async def test_delayed_job_on_paused_queue_becomes_waiting_but_does_not_run(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("d")
        starts: dict[int, float] = {}
        rt.worker(q, recorder(clock, starts))  # type: ignore[arg-type]
        await q.pause()
        job = await q.add("j", delay=5)
        await clock.advance(10)
        assert job.state is JobState.WAITING
        assert starts == {}
        await q.resume()
        with anyio.fail_after(5):
            await job.wait_until_finished()
        assert starts == {job.id: 10.0}
