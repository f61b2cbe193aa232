"""Step jobs: `move_to_delayed(ts, next_step=...)`, BullMQ-style `DelayedError`, step loops
bounded by `max_started_attempts`, retries resuming from a saved step, misuse, and two workers
sharing a queue of step jobs."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime

from actorq import (
    DelayedError,
    IllegalTransitionError,
    Job,
    JobFailedError,
    JobState,
    LockError,
    VirtualClock,
)


async def test_move_to_delayed_sets_step_unwinds_and_resumes_at_the_due_time(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("steps")
        entries: list[tuple[str, int, int, float | None]] = []
        after_call: list[str] = []

        async def processor(job: Job) -> str:
            step = job.data["step"]
            entries.append((step, job.attempts_started, job.attempts_made, job.processed_at))
            if step == "send":
                await job.move_to_delayed(clock.now() + 100, next_step="check")
                after_call.append(step)  # never runs: the call unwinds the processor
            if step == "check":
                await job.move_to_delayed(clock.now() + 50, "followup")
                after_call.append(step)
            return f"done at {step}"

        rt.worker(q, processor)
        job = await q.add("drip", {"step": "send", "to": "a@b.c"})
        await clock.sleep(10)  # t=10: the first step ran, the job sleeps until t=100
        assert job.state is JobState.DELAYED
        assert job.run_at == 100.0
        assert job.data == {"step": "check", "to": "a@b.c"}
        assert job.finished_at is None
        assert job.failed_reason is None
        assert job.return_value is None
        assert job.attempts_made == 0
        assert job.attempts_started == 1
        counts = await q.counts()
        assert counts["delayed"] == 1
        assert counts["completed"] == counts["failed"] == counts["active"] == 0
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == "done at followup"
        assert entries == [
            ("send", 1, 0, 0.0),
            ("check", 2, 0, 100.0),
            ("followup", 3, 0, 150.0),
        ]
        assert after_call == []
        assert job.processed_at == 150.0
        assert job.attempts_started == 3
        assert job.attempts_made == 1  # only the completion ended an attempt
        assert job.data == {"step": "followup", "to": "a@b.c"}


async def test_move_to_delayed_with_a_past_timestamp_is_due_at_once(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(start=1_000.0)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("steps")
        seen: list[tuple[Any, float]] = []

        async def processor(job: Job) -> int:
            seen.append((job.data["step"], clock.now()))
            if job.data["step"] == 1:
                await job.move_to_delayed(clock.now() - 500, next_step=2)
            return int(job.data["step"])

        rt.worker(q, processor)
        job = await q.add("past", {"step": 1})
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == 2
        assert seen == [(1, 1_000.0), (2, 1_000.0)]
        assert job.processed_at == 1_000.0
        assert job.attempts_started == 2
        assert job.attempts_made == 1


async def test_bullmq_style_update_data_then_delayed_error_goes_back_to_waiting(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("steps")
        runs: list[tuple[int, float, int, int]] = []
        after_raise: list[int] = []

        async def processor(job: Job) -> int:
            step = job.data["step"]
            runs.append((step, clock.now(), job.attempts_started, job.attempts_made))
            if step < 3:
                await job.update_data({"step": step + 1})
                raise DelayedError()
            after_raise.append(step)
            return int(step)

        rt.worker(q, processor)
        job = await q.add("bull", {"step": 1})
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == 3
        # straight back to waiting: no time passes between the steps
        assert runs == [(1, 0.0, 1, 0), (2, 0.0, 2, 0), (3, 0.0, 3, 0)]
        assert after_raise == [3]
        assert job.attempts_made == 1
        assert job.failed_reason is None
        assert job.stacktrace == []


async def test_delayed_error_with_a_delay_delays_the_job(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("steps")
        starts: list[float] = []

        async def processor(job: Job) -> str:
            starts.append(clock.now())
            if job.data["step"] == "first":
                await job.update_data({"step": "second"})
                raise DelayedError(delay=60)
            return "ok"

        rt.worker(q, processor)
        job = await q.add("bull", {"step": "first"})
        await clock.sleep(1)
        assert job.state is JobState.DELAYED
        assert job.run_at == 60.0
        assert job.attempts_made == 0
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == "ok"
        assert starts == [0.0, 60.0]
        assert job.processed_at == 60.0
        assert job.attempts_made == 1


async def test_max_started_attempts_bounds_a_step_loop(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("steps")
        entries: list[float] = []

        async def forever(job: Job) -> None:
            entries.append(clock.now())
            await job.move_to_delayed(clock.now() + 10, next_step=len(entries))

        rt.worker(q, forever)
        job = await q.add("loop", {"step": 0}, max_started_attempts=3)
        with anyio.fail_after(5), pytest.raises(JobFailedError) as info:
            await job.wait_until_finished()
        assert entries == [0.0, 10.0, 20.0]
        assert job.state is JobState.FAILED
        assert job.failed_reason is not None
        assert "max_started_attempts" in job.failed_reason
        assert info.value.reason == job.failed_reason
        # As BullMQ counts it: the fourth start (the one over the limit) and its attempt.
        assert job.attempts_started == 4
        assert job.attempts_made == 1
        assert job.finished_at == 30.0


async def test_a_retry_after_a_failure_resumes_from_the_saved_step(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("steps")
        entered: list[tuple[str, int]] = []
        failures = [1]

        async def processor(job: Job) -> str:
            step = job.data["step"]
            entered.append((step, job.attempts_made))
            if step == "fetch":
                await job.update_data({"step": "store", "fetched": 42})
                step = "store"
            if step == "store":
                if failures:
                    failures.pop()
                    raise RuntimeError("database down")
                return f"stored {job.data['fetched']}"
            raise AssertionError(f"unexpected step {step!r}")

        rt.worker(q, processor)
        job = await q.add("resume", {"step": "fetch"}, attempts=2)
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == "stored 42"
        # the second attempt started at the step the first one saved
        assert entered == [("fetch", 0), ("store", 1)]
        assert job.attempts_made == 2
        assert job.attempts_started == 2
        assert len(job.stacktrace) == 1  # the one failed attempt, as BullMQ keeps it
        assert "database down" in job.stacktrace[0]


async def test_move_to_delayed_on_a_job_that_is_not_active_is_a_clear_error(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("steps")
        job = await q.add("idle", {"step": "a"})  # no worker: it stays waiting
        with anyio.fail_after(5), pytest.raises((IllegalTransitionError, LockError)) as info:
            await job.move_to_delayed(clock.now() + 10, next_step="b")
        message = str(info.value)
        assert str(job.id) in message
        assert "waiting" in message
        # nothing changed
        assert job.state is JobState.WAITING
        assert job.data == {"step": "a"}
        assert job.run_at is None
        # a token that holds nothing is a lock error, not a hang either
        with anyio.fail_after(5), pytest.raises(LockError):
            await job.move_to_delayed(clock.now() + 10, token="nobody")
        # and the delayed job is no better
        later = await q.add("later", {"step": "a"}, delay=100)
        with anyio.fail_after(5), pytest.raises((IllegalTransitionError, LockError)):
            await later.move_to_delayed(clock.now() + 10)
        assert later.state is JobState.DELAYED
        assert later.run_at == 100.0
        with anyio.fail_after(5), pytest.raises((IllegalTransitionError, LockError)):
            await job.move_to_waiting_children()
        assert job.state is JobState.WAITING


async def test_two_workers_on_one_queue_never_run_the_same_job_at_once(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("steps")
        running: set[int] = set()
        clashes: list[int] = []
        runs: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}

        def make(worker: str) -> Any:
            async def processor(job: Job) -> int:
                if job.id in running:
                    clashes.append(job.id)
                running.add(job.id)
                try:
                    step = int(job.data["step"])
                    runs[worker].append((job.id, step))
                    await clock.sleep(1 + job.id % 3)
                    if step < 3:
                        await job.move_to_delayed(clock.now() + 5, next_step=step + 1)
                    return step
                finally:
                    running.discard(job.id)

            return processor

        rt.worker(q, make("a"), concurrency=4)
        rt.worker(q, make("b"), concurrency=4)
        jobs = await q.add_bulk([{"name": "s", "data": {"step": 1}} for _ in range(30)])
        with anyio.fail_after(10):
            for job in jobs:
                assert await job.wait_until_finished() == 3
        assert clashes == []
        every = runs["a"] + runs["b"]
        expected = sorted((job.id, step) for job in jobs for step in (1, 2, 3))
        assert sorted(every) == expected  # each step of each job ran exactly once
        assert set(runs["a"]).isdisjoint(runs["b"])
        assert runs["a"]
        assert runs["b"]
        assert all(job.attempts_started == 3 and job.attempts_made == 1 for job in jobs)
