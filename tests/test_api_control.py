"""Lifecycle and control: waiting for a job, cancel, retry, remove, drain, clean, retention,
idempotency, updates from a processor, sync processors, concurrency."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from runtimes import MakeRuntime

from actorq import (
    IllegalTransitionError,
    InvalidOptionError,
    Job,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    JobProgress,
    JobRemoved,
    JobState,
    VirtualClock,
)

#: Control is state: it must hold on every kind of runtime, PostgreSQL's journal included.
pytestmark = pytest.mark.runtimes("local", "remote", "postgresql")


async def echo(job: Job) -> Any:
    return job.data


async def explode(job: Job) -> None:
    raise ValueError("kaput")


# ---------------------------------------------------------------- wait_until_finished


async def test_wait_until_finished_returns_the_value(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("w")
        rt.worker(q, echo)
        job = await q.add("e", {"a": [1, 2], "t": (3, 4)})
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == {"a": [1, 2], "t": [3, 4]}
        assert job.return_value == {"a": [1, 2], "t": [3, 4]}
        assert job.state is JobState.COMPLETED
        # a finished job answers at once, again
        assert await job.wait_until_finished() == {"a": [1, 2], "t": [3, 4]}


async def test_wait_until_finished_raises_job_failed(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("w")
        rt.worker(q, explode)
        job = await q.add("x")
        with anyio.fail_after(5), pytest.raises(JobFailedError) as info:
            await job.wait_until_finished()
        assert info.value.job_id == job.id
        assert info.value.reason is not None
        assert "kaput" in info.value.reason


async def test_wait_until_finished_raises_job_cancelled(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("w")
        job = await q.add("x", delay=100)
        async with anyio.create_task_group() as tg:
            outcome: list[BaseException] = []

            async def wait() -> None:
                try:
                    await job.wait_until_finished()
                except JobCancelledError as exc:
                    outcome.append(exc)

            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            await q.cancel(job.id, reason="not needed")
        assert len(outcome) == 1
        assert isinstance(outcome[0], JobCancelledError)
        assert outcome[0].reason == "not needed"
        assert job.state is JobState.CANCELLED


async def test_wait_until_finished_raises_not_found_when_removed_first(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("w")
        await q.pause()
        job = await q.add("x")
        errors: list[BaseException] = []

        async def wait() -> None:
            try:
                await job.wait_until_finished()
            except JobNotFoundError as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.wait_all_tasks_blocked()
                await q.remove(job.id)
        assert len(errors) == 1
        assert isinstance(errors[0], KeyError)
        # and a wait started after the removal does not hang either
        with anyio.fail_after(5), pytest.raises(JobNotFoundError):
            await job.wait_until_finished()


async def test_wait_until_finished_times_out_on_the_runtime_clock(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("w")
        rt.worker(q, echo)
        job = await q.add("x", "v", delay=100)
        with anyio.fail_after(5), pytest.raises(TimeoutError):
            await job.wait_until_finished(timeout=5)
        assert clock.now() == 5.0
        assert job.state is JobState.DELAYED
        # the job itself is untouched and still finishes
        with anyio.fail_after(5):
            assert await job.wait_until_finished(timeout=1000) == "v"
        assert job.processed_at == 100.0


# ---------------------------------------------------------------- cancel


async def test_cancel_waiting_and_delayed_jobs(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("c")
        ran: list[int] = []

        async def record(job: Job) -> None:
            ran.append(job.id)

        await q.pause()
        rt.worker(q, record)
        waiting = await q.add("w")
        delayed = await q.add("d", delay=10)
        keep = await q.add("k")
        await q.cancel(waiting.id)
        await delayed.cancel(reason="changed my mind")
        assert waiting.state is JobState.CANCELLED
        assert delayed.state is JobState.CANCELLED
        assert delayed.failed_reason == "changed my mind"
        counts = await q.counts()
        assert (counts["cancelled"], counts["waiting"], counts["delayed"]) == (2, 1, 0)
        await q.resume()
        await clock.advance(20)
        with anyio.fail_after(5):
            await keep.wait_until_finished()
        assert ran == [keep.id]
        # a finished job cannot be cancelled again
        with pytest.raises(IllegalTransitionError):
            await q.cancel(keep.id)
        with pytest.raises(JobNotFoundError):
            await q.cancel(9999)


async def test_cancel_active_job_cancels_its_processor(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("c")
        started = anyio.Event()
        cancelled = anyio.Event()
        finished_normally = False

        async def hang(job: Job) -> str:
            nonlocal finished_normally
            if job.name == "next":
                return "next done"
            started.set()
            try:
                await anyio.Event().wait()
            except anyio.get_cancelled_exc_class():
                cancelled.set()
                raise
            finished_normally = True
            return "never"

        rt.worker(q, hang)
        job = await q.add("h")
        with anyio.fail_after(5):
            await started.wait()
            assert job.state is JobState.ACTIVE
            await q.cancel(job.id, reason="stop")
            await cancelled.wait()
            with pytest.raises(JobCancelledError):
                await job.wait_until_finished()
        assert not finished_normally
        assert job.state is JobState.CANCELLED
        assert (await q.counts())["active"] == 0
        # the worker's only slot is free again: the next job runs on it
        nxt = await q.add("next")
        with anyio.fail_after(5):
            assert await nxt.wait_until_finished() == "next done"


# ---------------------------------------------------------------- retry / remove


async def test_retry_of_failed_job_runs_it_again(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("r")
        calls = 0

        async def second_time_lucky(job: Job) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("first")
            return calls

        rt.worker(q, second_time_lucky)
        job = await q.add("x")
        with anyio.fail_after(5), pytest.raises(JobFailedError):
            await job.wait_until_finished()
        assert job.state is JobState.FAILED
        await q.retry(job.id)
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == 2
        assert job.state is JobState.COMPLETED
        assert job.attempts_made == 2
        assert job.attempts_started == 2
        assert (await q.counts())["failed"] == 0


async def test_retry_of_unfinished_job_is_illegal(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("r")
        await q.pause()
        job = await q.add("x")
        with pytest.raises(IllegalTransitionError):
            await q.retry(job.id)
        assert job.state is JobState.WAITING


async def test_remove_waiting_active_and_missing_jobs(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("rm")
        started = anyio.Event()
        release = anyio.Event()

        async def hold(job: Job) -> None:
            started.set()
            await release.wait()

        rt.worker(q, hold)
        active = await q.add("a")
        with anyio.fail_after(5):
            await started.wait()
        waiting = await q.add("w")
        with pytest.raises(IllegalTransitionError):
            await q.remove(active.id)
        assert active.state is JobState.ACTIVE
        await q.remove(waiting.id)
        assert await q.get_job(waiting.id) is None
        with pytest.raises(JobNotFoundError):
            await q.remove(waiting.id)
        with pytest.raises(JobNotFoundError):
            await q.remove(12345)
        release.set()
        with anyio.fail_after(5):
            await active.wait_until_finished()
        counts = await q.counts()
        assert counts["completed"] == 1
        assert sum(counts.values()) == 1


# ---------------------------------------------------------------- drain / clean


async def test_drain_removes_waiting_and_optionally_delayed(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("d")
        await q.pause()
        for i in range(3):
            await q.add("w", i)
        delayed = [await q.add("d", i, delay=50) for i in range(2)]
        assert await q.drain() == 3
        counts = await q.counts()
        assert (counts["waiting"], counts["delayed"]) == (0, 2)
        assert [j.id for j in await q.get_jobs("delayed")] == [j.id for j in delayed]
        await q.add("w2")
        assert await q.drain(delayed=True) == 3
        counts = await q.counts()
        assert sum(counts.values()) == 0


async def test_clean_by_grace_limit_and_state(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("cl")
        ok = rt.queue("cl")
        rt.worker(ok, echo)
        old = [await q.add("ok", i) for i in range(4)]
        bad = rt.queue("cl-bad")
        rt.worker(bad, explode)
        old_failed = [await bad.add("bad", i) for i in range(2)]
        with anyio.fail_after(5):
            for job in old:
                await job.wait_until_finished()
        await clock.run_until_idle()
        await clock.advance(100)
        new = await q.add("ok", "new")
        with anyio.fail_after(5):
            await new.wait_until_finished()

        assert await q.clean(grace=200) == 0  # nothing finished 200 s ago
        assert await q.clean(grace=50, limit=3) == 3
        remaining = [j.id for j in await q.get_jobs("completed")]
        assert len(remaining) == 2
        assert new.id in remaining
        assert await q.clean(grace=50) == 1
        assert [j.id for j in await q.get_jobs("completed")] == [new.id]
        # state selects what is cleaned; completed jobs are not touched by a failed clean
        assert await bad.clean(grace=50, state="completed") == 0
        assert await bad.clean(grace=50, state="failed") == 2
        assert (await bad.counts())["failed"] == 0
        for job in old_failed:
            assert await bad.get_job(job.id) is None
        with pytest.raises(InvalidOptionError):
            await q.clean(grace=-1)


# ---------------------------------------------------------------- idempotency


async def test_duplicate_idempotency_key_returns_existing_job_with_its_data(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("i")
        await q.pause()
        first = await q.add("order", {"v": 1}, idempotency_key="order-42")
        again = await q.add("order", {"v": 2}, idempotency_key="order-42", priority=9)
        assert again.id == first.id
        assert again.data == {"v": 1}
        assert again.priority == 0
        assert again.idempotency_key == "order-42"
        assert (await q.counts())["waiting"] == 1


async def test_idempotency_key_in_add_bulk(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("i")
        await q.pause()
        existing = await q.add("x", "old", idempotency_key="k1")
        jobs = await q.add_bulk(
            [
                {"name": "x", "data": "dup", "idempotency_key": "k1"},
                {"name": "x", "data": "new", "idempotency_key": "k2"},
                {"name": "x", "data": "dup-in-batch", "idempotency_key": "k2"},
                {"name": "x", "data": "plain"},
            ]
        )
        assert jobs[0].id == existing.id
        assert jobs[0].data == "old"
        assert jobs[2].id == jobs[1].id
        assert jobs[2].data == "new"
        assert jobs[3].id not in (existing.id, jobs[1].id)
        assert (await q.counts())["waiting"] == 3


async def test_idempotency_key_is_free_again_after_removal(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("i")
        await q.pause()
        first = await q.add("x", 1, idempotency_key="k")
        await q.remove(first.id)
        second = await q.add("x", 2, idempotency_key="k")
        assert second.id != first.id
        assert second.data == 2


# ---------------------------------------------------------------- retention


async def test_remove_on_complete_true_removes_at_once_and_waiter_gets_value(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("ret")
        release = anyio.Event()

        async def gated(job: Job) -> str:
            await release.wait()
            return "value"

        rt.worker(q, gated)
        job = await q.add("x", remove_on_complete=True)
        values: list[Any] = []

        async def wait() -> None:
            values.append(await job.wait_until_finished())

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.wait_all_tasks_blocked()
                release.set()
        assert values == ["value"]
        assert await q.get_job(job.id) is None
        assert (await q.counts())["completed"] == 0


async def test_remove_on_complete_true_wait_after_completion_returns_value(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("ret")
        rt.worker(q, echo)
        async with rt.events() as events:
            job = await q.add("x", "value", remove_on_complete=True)
            with anyio.fail_after(5):
                async for event in events:
                    if isinstance(event, JobRemoved) and event.job_id == job.id:
                        break
        assert await q.get_job(job.id) is None
        # The job finished before it was removed: its handle still knows the value.
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == "value"


async def test_remove_on_complete_count_keeps_the_last_n(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("ret")
        rt.worker(q, echo)
        jobs = []
        for i in range(6):
            job = await q.add("x", i, remove_on_complete=2)
            with anyio.fail_after(5):
                assert await job.wait_until_finished() == i
            jobs.append(job)
            kept = [j.id for j in await q.get_jobs("completed")]
            assert kept == [j.id for j in jobs[-2:]]
        assert (await q.counts())["completed"] == 2


async def test_remove_on_fail_count_keeps_the_last_n(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("ret")
        rt.worker(q, explode)
        jobs = []
        for i in range(4):
            job = await q.add("x", i, remove_on_fail=1)
            with anyio.fail_after(5), pytest.raises(JobFailedError):
                await job.wait_until_finished()
            jobs.append(job)
        assert [j.id for j in await q.get_jobs("failed")] == [jobs[-1].id]


async def test_remove_on_complete_age_removes_after_that_much_virtual_time(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("ret")
        rt.worker(q, echo)
        job = await q.add("x", "v", remove_on_complete={"age": 60})
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == "v"
        assert job.finished_at == 0.0
        await clock.advance(59)
        assert await q.get_job(job.id) is not None
        await clock.advance(1)
        assert await q.get_job(job.id) is None
        assert (await q.counts())["completed"] == 0


# ---------------------------------------------------------------- updates from a processor


async def test_update_data_progress_and_log_from_a_processor(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("u")
        seen_lines: list[int] = []

        async def work(job: Job) -> str:
            await job.update_data({**job.data, "step": 2})
            await job.update_progress(50)
            seen_lines.append(await job.log("halfway"))
            await job.update_progress({"pct": 100})
            seen_lines.append(await job.log("done"))
            return "ok"

        rt.worker(q, work)
        async with rt.events() as events:
            job = await q.add("x", {"step": 1})
            with anyio.fail_after(5):
                assert await job.wait_until_finished() == "ok"
            progress: list[Any] = []
            while True:
                try:
                    event = events.receive_nowait()
                except anyio.WouldBlock:
                    break
                if isinstance(event, JobProgress) and event.job_id == job.id:
                    progress.append(event.progress)
        assert progress == [50, {"pct": 100}]
        assert job.data == {"step": 2}
        assert job.progress == {"pct": 100}
        assert job.logs == ["halfway", "done"]
        assert seen_lines == [1, 2]
        fresh = await q.get_job(job.id)
        assert fresh is not None
        assert fresh.data == {"step": 2}


async def test_update_data_rejects_unencodable_and_changes_nothing(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("u")
        await q.pause()
        job = await q.add("x", {"a": 1})
        with pytest.raises(InvalidOptionError) as info:
            await job.update_data({"a": object()})
        assert info.value.field == "data"
        assert job.data == {"a": 1}
        with pytest.raises(InvalidOptionError):
            await job.log(42)  # type: ignore[arg-type]
        assert job.logs == []


# ---------------------------------------------------------------- processors


async def test_sync_processor_runs_in_a_thread(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        q = rt.queue("s")

        def double(job: Job) -> int:
            return int(job.data) * 2

        rt.worker(q, double, run_in_thread=True)
        jobs = [await q.add("d", i) for i in range(3)]
        with anyio.fail_after(5):
            assert [await j.wait_until_finished() for j in jobs] == [0, 2, 4]


async def test_sync_processor_failure_fails_the_job(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        q = rt.queue("s")

        def broken(job: Job) -> None:
            raise ValueError("sync boom")

        rt.worker(q, broken, run_in_thread=True)
        job = await q.add("d")
        with anyio.fail_after(5), pytest.raises(JobFailedError) as info:
            await job.wait_until_finished()
        assert "sync boom" in str(info.value)


async def test_async_processor_required_without_run_in_thread(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        q = rt.queue("s")

        def sync(job: Job) -> None:
            return None

        async def asynchronous(job: Job) -> None:
            return None

        with pytest.raises(InvalidOptionError) as info:
            rt.worker(q, sync)
        assert info.value.field == "processor"
        assert "run_in_thread" in str(info.value)
        with pytest.raises(InvalidOptionError) as info:
            rt.worker(q, asynchronous, run_in_thread=True)
        assert info.value.field == "processor"
        with pytest.raises(InvalidOptionError):
            rt.worker(q, "not callable")  # type: ignore[arg-type]


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_concurrency_n_runs_n_at_once(concurrency: int, make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        q = rt.queue("n")
        running = 0
        peak = 0
        enough = anyio.Event()
        release = anyio.Event()

        async def hold(job: Job) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            if running == concurrency:
                enough.set()
            await release.wait()
            running -= 1
            return job.id

        rt.worker(q, hold, concurrency=concurrency)
        jobs = [await q.add("h", i) for i in range(concurrency * 2 + 1)]
        with anyio.fail_after(5):
            await enough.wait()
            await anyio.wait_all_tasks_blocked()
            assert running == concurrency
            counts = await q.counts()
            assert counts["active"] == concurrency
            assert counts["waiting"] == len(jobs) - concurrency
            release.set()
            for job in jobs:
                assert await job.wait_until_finished() == job.id
        assert peak == concurrency


async def test_processor_that_sleeps_on_the_clock_completes(make_runtime: MakeRuntime) -> None:
    """A processor may await the clock (or open its own cancel scope) and still complete."""
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("sleepy")

        async def nap(job: Job) -> float:
            await clock.sleep(3)
            with anyio.move_on_after(60):
                await anyio.lowlevel.checkpoint()
            return clock.now()

        rt.worker(q, nap)
        job = await q.add("n")
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == 3.0
        assert job.finished_at == 3.0
        assert job.attempts_made == 1
