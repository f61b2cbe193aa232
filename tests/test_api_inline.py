"""Requests run inline, in the caller's task, while the scheduler is idle and the change log
commits without waiting (no journal, or the in-memory one): what a user can rely on."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from runtimes import MakeRuntime

from actorq import Job, MemoryChangeLog, Runtime, RuntimeClosedError

# The tests on Runtime(...) here read a Runtime's own engine (its batch statistics, its
# change log's commits, its core and state): a client has none of them.


async def test_a_consumer_polling_an_empty_queue_lets_other_tasks_run(
    make_runtime: MakeRuntime,
) -> None:
    # Inline calls mostly do not suspend; one in 32 yields, so a producer still gets to run.
    async with make_runtime() as rt:
        q = rt.queue("m")
        w = rt.worker(q)
        job: Job | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(q.add, "made-elsewhere")
            for _ in range(128):
                job = await w.get_next_job("poller")
                if job is not None:
                    break
        assert job is not None and job.name == "made-elsewhere"


async def test_a_cancelled_caller_stops_within_32_calls_each_whole(
    make_runtime: MakeRuntime,
) -> None:
    # One call in 32 yields and checks for cancellation before it changes anything, so
    # a cancelled caller stops soon, and every call it made either happened or did not.
    async with make_runtime() as rt:
        q = rt.queue("m")
        added = 0
        with anyio.CancelScope() as scope:
            scope.cancel()
            for _ in range(64):
                await q.add("j")
                added += 1
        counts = await q.counts()
        assert added < 32
        assert counts["waiting"] == added


async def test_a_manual_loop_lets_other_tasks_run_and_stops_whole_when_cancelled(
    make_runtime: MakeRuntime,
) -> None:
    # `move_to_completed` runs inline and mostly does not suspend, yet one call in 32
    # yields: a task beside the loop runs, and a cancelled loop stops soon, each
    # completion it made counted and no other.
    async with make_runtime() as rt:
        q = rt.queue("m")
        w = rt.worker(q)
        await q.add_bulk([{"name": "j", "data": None} for _ in range(320)])
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.lowlevel.checkpoint()

        done = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            job = await w.get_next_job("loop")
            while job is not None and done < 320:
                job = await job.move_to_completed(None, "loop", fetch_next=done < 319)
                done += 1
            tg.cancel_scope.cancel()
        assert done == 320 and ticks >= 9
        await q.add_bulk([{"name": "k", "data": None} for _ in range(64)])
        completed = 0
        job = await w.get_next_job("loop")
        with anyio.CancelScope() as scope:
            scope.cancel()
            while job is not None:
                job = await job.move_to_completed(None, "loop")
                completed += 1
        counts = await q.counts()
        assert completed < 32
        assert counts["completed"] == 320 + completed


class CountingLog(MemoryChangeLog):
    """A log whose commit waits (as a slow disk or a fault injector would): it says so."""

    waits = True

    def __init__(self) -> None:
        super().__init__()
        self.commits = 0

    async def _commit(self, changes: list[Any]) -> None:
        self.commits += 1
        await anyio.lowlevel.checkpoint()
        super().commit(changes)

    def commit(self, changes: list[Any]) -> Any:  # type: ignore[override]
        return self._commit(changes)


async def test_a_change_log_whose_commit_waits_sees_every_batch_on_the_loop() -> None:
    log = CountingLog()
    async with Runtime(journal=log) as rt:
        q = rt.queue("m")
        for i in range(10):
            await q.add("j", i)
        stats = rt.statistics()
    assert log.commits >= 10
    assert stats.inline_batches == 0 and stats.loop_batches >= 10
    async with Runtime(journal=log) as again:
        assert (await again.queue("m").counts())["waiting"] == 10


async def test_a_log_that_does_not_wait_runs_idle_time_calls_inline() -> None:
    async with Runtime(journal=MemoryChangeLog()) as rt:
        q = rt.queue("m")
        for i in range(10):
            await q.add("j", i)
        stats = rt.statistics()
    assert stats.inline_batches >= 9  # the first may find the loop not yet parked


async def test_a_bug_in_an_inline_command_crashes_the_runtime_loudly() -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("core bug")

    caught: list[BaseException] = []
    with pytest.raises(BaseException) as raised:  # a group, or the error itself
        async with Runtime() as rt:
            q = rt.queue("m")
            rt._core.pause = broken  # type: ignore[method-assign]
            try:
                await q.pause()
            except RuntimeClosedError as exc:  # as a caller on the loop would hear it
                caught.append(exc.__cause__)
            await anyio.sleep(1)  # the scheduler's task dies of it meanwhile
    assert [str(e) for e in caught] == ["core bug"]
    assert "core bug" in repr(raised.value) or raised.group_contains(RuntimeError)


async def test_worker_outcomes_and_adds_agree_with_events_order(make_runtime: MakeRuntime) -> None:
    # With every step inline, events still come out in the order the jobs went through.
    async with make_runtime() as rt:
        q = rt.queue("m")
        seen: list[tuple[str, int]] = []

        async def process(job: Job) -> int:
            return int(job.data) * 2

        async with rt.events() as events:
            rt.worker(q, process, concurrency=2)
            jobs = [await q.add("j", i) for i in range(5)]
            values = [await job.wait_until_finished() for job in jobs]
            for event in events.drain_nowait():
                if type(event).__name__ in ("JobAdded", "JobCompleted"):
                    seen.append((type(event).__name__, event.job_id))
        assert values == [0, 2, 4, 6, 8]
        completed = [job_id for kind, job_id in seen if kind == "JobCompleted"]
        added = [job_id for kind, job_id in seen if kind == "JobAdded"]
        assert added == [job.id for job in jobs]
        assert sorted(completed) == [job.id for job in jobs]
        for job in jobs:
            assert seen.index(("JobAdded", job.id)) < seen.index(("JobCompleted", job.id))


async def test_a_busy_worker_lets_a_woken_task_run_within_a_batch(
    make_runtime: MakeRuntime,
) -> None:
    # A processor wakes the main task at the 500th job: the main task runs before the worker
    # has gone through more than a couple of batches (one batch = concurrency jobs), not
    # after every runner took its turn.
    async with make_runtime() as rt:
        q = rt.queue("m")
        await q.add_bulk([{"name": "j"} for _ in range(3000)])
        started = 0
        woken = anyio.Event()

        async def process(job: Job) -> None:
            nonlocal started
            started += 1
            if started == 500:
                woken.set()

        rt.worker(q, process, concurrency=50)
        await woken.wait()
        assert started <= 500 + 2 * 50


async def test_no_inline_call_is_acknowledged_once_the_runtime_closed() -> None:
    # The call in 32 that yields first can resume after the runtime closed, while its
    # scheduler still looks idle (its task has not yet seen the cancellation): it must
    # then refuse, not run on a stopped runtime.
    late = 0
    for _ in range(50):
        async with anyio.create_task_group() as tg, Runtime() as rt:
            q = rt.queue("q")

            async def spam(rt: Runtime = rt, q: Any = q) -> None:
                nonlocal late
                with contextlib.suppress(RuntimeClosedError):
                    while True:
                        await q.add("x")
                        late += rt._state == "closed"

            tg.start_soon(spam)
            await anyio.sleep(0.001)
    assert late == 0
