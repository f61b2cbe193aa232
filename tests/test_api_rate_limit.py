"""Rate limits (issue 17): a worker's ``limiter={"max", "duration"}`` limits the queue as a
whole, across its workers and restarts; a processor limits it by hand with
``worker.rate_limit`` and ``RateLimitError``. Exact on a virtual clock."""

from __future__ import annotations

from typing import Any

import pytest
from runtimes import MakeRuntime, RuntimeLives

from actorq import InvalidOptionError, Job, RateLimitError, VirtualClock


def busiest_second(starts: list[float]) -> int:
    """The most starts in any window [t, t + 1) (t a start time: the worst window)."""
    return max(sum(1 for s in starts if t <= s < t + 1) for t in starts)


async def test_100_jobs_at_10_per_second_take_10_seconds_across_two_workers(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        starts: list[float] = []

        async def work(job: Job) -> None:
            starts.append(clock.now())

        limiter = {"max": 10, "duration": 1}
        rt.worker(q, work, concurrency=50, limiter=limiter)
        rt.worker(q, work, concurrency=50, limiter=limiter)
        await q.add_bulk([{"name": "j"} for _ in range(100)])
        await clock.advance(60)
        assert len(starts) == 100
        assert busiest_second(starts) == 10
        assert sorted(set(starts)) == [float(t) for t in range(10)]


async def test_a_processor_limits_the_queue_by_hand_and_its_job_waits_without_an_attempt(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        starts: list[tuple[str, float]] = []
        worker: Any = None

        async def work(job: Job) -> None:
            starts.append((job.name, clock.now()))
            if job.name == "first" and len(starts) == 1:
                await worker.rate_limit(5)  # the API says: come back in 5 s
                raise RateLimitError()

        worker = rt.worker(q, work)
        first = await q.add("first")
        await clock.advance(1)
        assert await q.get_rate_limit_ttl() == 4.0
        await q.add("second")
        await clock.advance(10)
        assert starts == [("first", 0.0), ("first", 5.0), ("second", 5.0)]
        done = await q.get_job(first.id)
        # Two starts, one attempt: the limited one did not count.
        assert done is not None and (done.attempts_started, done.attempts_made) == (2, 1)
        assert await q.get_rate_limit_ttl() == 0.0


@pytest.mark.runtimes("local", "remote", "postgresql")
async def test_the_window_holds_across_a_restart(runtime_lives: RuntimeLives) -> None:
    clock = VirtualClock(autojump=False)
    limiter = {"max": 2, "duration": 60}
    starts: list[float] = []

    async def work(job: Job) -> None:
        starts.append(clock.now())

    async with runtime_lives(clock=clock) as life:
        async with life() as rt:
            q = rt.queue("q")
            rt.worker(q, work, limiter=limiter)
            await q.add_bulk([{"name": "j"} for _ in range(3)])
            await clock.advance(1)
            assert starts == [0.0, 0.0]
        async with life() as rt:  # on the same clock: the time goes on from the stop
            q = rt.queue("q")
            assert await q.get_rate_limit_ttl() == 59.0
            rt.worker(q, work, limiter=limiter)
            await clock.advance(30)
            assert starts == [0.0, 0.0]  # the window opened before the restart still holds
            await clock.advance(30)
            assert starts == [0.0, 0.0, 60.0]


@pytest.mark.parametrize(
    ("limiter", "field"),
    [
        ({"max": 0, "duration": 1}, "limiter.max"),
        ({"max": 1, "duration": 0}, "limiter.duration"),
        ({"max": 1}, "limiter"),
        ({"max": 1, "duration": 1, "dur": 2}, "limiter.dur"),
        ({"max": "10", "duration": 1}, "limiter.max"),
        ([10, 1], "limiter"),
    ],
)
async def test_a_bad_limiter_is_refused_naming_the_field(
    limiter: Any, field: str, make_runtime: MakeRuntime
) -> None:
    async def work(job: Job) -> None:
        return None

    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("q")
        with pytest.raises(InvalidOptionError) as info:
            rt.worker(q, work, limiter=limiter)
        assert info.value.field == field
        assert q.get_workers() == []
        assert await q.get_rate_limit_ttl() == 0.0
