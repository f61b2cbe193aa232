"""Retries: attempts, fixed/exponential backoff, cap, jitter, unrecoverable, timeout, events.
On every kind of runtime: a retry is state, journaled and replayed."""

from __future__ import annotations

import itertools

import anyio
import pytest
from runtimes import MakeRuntime

from actorq import (
    Backoff,
    Job,
    JobFailed,
    JobFailedError,
    JobRetrying,
    JobState,
    UnrecoverableError,
    VirtualClock,
)

pytestmark = pytest.mark.runtimes("local", "remote", "postgresql")


async def start_times(
    make: MakeRuntime, backoff: Backoff | float | None, attempts: int, *, seed: int = 0
) -> tuple[list[float], Job]:
    """Run a job that always fails; return the clock times its attempts started at."""
    clock = VirtualClock()
    calls: list[float] = []
    async with make(clock=clock, seed=seed) as rt:
        q = rt.queue("r")

        async def always_fails(job: Job) -> None:
            calls.append(clock.now())
            raise ValueError(f"attempt {len(calls)}")

        rt.worker(q, always_fails)
        job = await q.add("f", attempts=attempts, backoff=backoff)
        with anyio.fail_after(5), pytest.raises(JobFailedError):
            await job.wait_until_finished()
    return calls, job


def waits(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_fixed_backoff_waits_the_same_between_attempts(make_runtime: MakeRuntime) -> None:
    times, job = await start_times(make_runtime, Backoff.fixed(30), attempts=4)
    assert times == [0.0, 30.0, 60.0, 90.0]
    assert job.state is JobState.FAILED
    assert job.attempts_made == 4


async def test_number_backoff_is_fixed(make_runtime: MakeRuntime) -> None:
    times, _job = await start_times(make_runtime, 7, attempts=3)
    assert times == [0.0, 7.0, 14.0]


async def test_no_backoff_retries_at_once(make_runtime: MakeRuntime) -> None:
    times, job = await start_times(make_runtime, None, attempts=3)
    assert times == [0.0, 0.0, 0.0]
    assert job.attempts_made == 3


async def test_exponential_backoff_doubles(make_runtime: MakeRuntime) -> None:
    times, _job = await start_times(make_runtime, Backoff.exponential(1), attempts=5)
    assert waits(times) == [1.0, 2.0, 4.0, 8.0]
    assert times[0] == 0.0


async def test_exponential_backoff_is_capped_by_max_delay(make_runtime: MakeRuntime) -> None:
    times, _job = await start_times(make_runtime, Backoff.exponential(1, max_delay=3), attempts=6)
    assert waits(times) == [1.0, 2.0, 3.0, 3.0, 3.0]


async def test_jitter_stays_within_bounds_and_varies(make_runtime: MakeRuntime) -> None:
    times, _job = await start_times(make_runtime, Backoff.fixed(10, jitter=0.5), attempts=9, seed=1)
    gaps = waits(times)
    assert len(gaps) == 8
    assert all(5.0 <= g <= 10.0 for g in gaps), gaps
    assert len(set(gaps)) > 1, "jitter drew the same wait every time"


async def test_exponential_jitter_within_bounds(make_runtime: MakeRuntime) -> None:
    times, _job = await start_times(
        make_runtime, Backoff.exponential(2, jitter=1.0), attempts=5, seed=3
    )
    for n, gap in enumerate(waits(times), start=1):
        assert 0.0 <= gap <= 2.0 * 2 ** (n - 1)


async def test_jitter_is_deterministic_for_the_same_seed(make_runtime: MakeRuntime) -> None:
    backoff = Backoff.exponential(4, jitter=0.8)
    first, _ = await start_times(make_runtime, backoff, attempts=6, seed=42)
    second, _ = await start_times(make_runtime, backoff, attempts=6, seed=42)
    other, _ = await start_times(make_runtime, backoff, attempts=6, seed=43)
    assert first == second
    assert first != other


async def test_unrecoverable_error_fails_at_once_despite_attempts_left(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("u")
        calls = 0

        async def fatal(job: Job) -> None:
            nonlocal calls
            calls += 1
            raise UnrecoverableError("card declined")

        rt.worker(q, fatal)
        job = await q.add("pay", attempts=5, backoff=Backoff.fixed(10))
        with anyio.fail_after(5), pytest.raises(JobFailedError) as info:
            await job.wait_until_finished()
        assert info.value.job_id == job.id
        assert "card declined" in str(info.value)
        assert calls == 1
        assert job.state is JobState.FAILED
        assert job.attempts_made == 1
        assert job.attempts_started == 1
        assert job.failed_reason is not None
        assert "card declined" in job.failed_reason
        assert clock.now() == 0.0


async def test_failed_reason_and_stacktrace_are_recorded(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("s")

        async def boom(job: Job) -> None:
            raise KeyError(f"missing-{job.attempts_started}")

        rt.worker(q, boom)
        job = await q.add("k", attempts=2)
        with anyio.fail_after(5), pytest.raises(JobFailedError) as info:
            await job.wait_until_finished()
        assert job.failed_reason is not None
        assert "KeyError" in job.failed_reason
        assert "missing-2" in job.failed_reason  # the last attempt's reason
        assert info.value.reason == job.failed_reason
        assert len(job.stacktrace) == 2  # one trace per failed attempt
        assert all("KeyError" in trace for trace in job.stacktrace)
        assert "in boom" in job.stacktrace[-1]
        assert job.finished_at is not None


async def test_attempt_counters_follow_bullmq(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("c")
        seen: list[tuple[int, int]] = []

        async def flaky(job: Job) -> str:
            seen.append((job.attempts_started, job.attempts_made))
            if job.attempts_started < 3:
                raise RuntimeError("transient")
            return "ok"

        rt.worker(q, flaky)
        job = await q.add("f", attempts=5, backoff=Backoff.fixed(1))
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == "ok"
        # started counts pickups; made counts finished attempts (failed ones included)
        assert seen == [(1, 0), (2, 1), (3, 2)]
        assert job.attempts_started == 3
        assert job.attempts_made == 3
        assert job.state is JobState.COMPLETED
        assert job.failed_reason is not None  # BullMQ keeps the last failure's reason


async def test_timeout_fails_a_hanging_job(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("t")
        finished_sleep = False

        async def hangs(job: Job) -> str:
            nonlocal finished_sleep
            await clock.sleep(100)
            finished_sleep = True
            return "too late"

        rt.worker(q, hangs)
        job = await q.add("h", timeout=5)
        with anyio.fail_after(5), pytest.raises(JobFailedError) as info:
            await job.wait_until_finished()
        assert not finished_sleep
        assert job.state is JobState.FAILED
        assert job.finished_at == 5.0
        assert clock.now() == 5.0
        assert job.failed_reason is not None
        assert "timed out" in job.failed_reason
        assert info.value.reason == job.failed_reason


async def test_timeout_counts_as_a_failed_attempt_and_retries(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("t")
        starts: list[float] = []

        async def slow_then_fast(job: Job) -> float:
            starts.append(clock.now())
            if len(starts) == 1:
                await clock.sleep(100)
            return clock.now()

        rt.worker(q, slow_then_fast)
        job = await q.add("h", timeout=5, attempts=2, backoff=Backoff.fixed(10))
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == 15.0
        assert starts == [0.0, 15.0]
        assert job.attempts_made == 2


async def test_job_that_finishes_within_timeout_completes(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("t")

        async def quick(job: Job) -> str:
            await clock.sleep(4)
            return "in time"

        rt.worker(q, quick)
        job = await q.add("h", timeout=5)
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == "in time"
        assert job.finished_at == 4.0


async def test_retrying_and_failed_events(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("e")

        async def fails(job: Job) -> None:
            raise ValueError(f"no {job.attempts_started}")

        async with rt.events() as events:
            rt.worker(q, fails)
            job = await q.add("f", attempts=3, backoff=Backoff.exponential(2))
            mine: list[JobRetrying | JobFailed] = []
            with anyio.fail_after(5):
                async for event in events:
                    if isinstance(event, JobRetrying | JobFailed) and event.job_id == job.id:
                        mine.append(event)
                        if isinstance(event, JobFailed):
                            break
        assert [type(e) for e in mine] == [JobRetrying, JobRetrying, JobFailed]
        first, second, last = mine
        assert isinstance(first, JobRetrying)
        assert isinstance(second, JobRetrying)
        assert isinstance(last, JobFailed)
        assert (first.attempts_made, first.run_at) == (1, 2.0)
        assert (second.attempts_made, second.run_at) == (2, 6.0)
        assert first.reason is not None
        assert "no 1" in first.reason
        assert last.reason is not None
        assert "no 3" in last.reason
        assert last.queue == "e"
        assert last.name == "f"
