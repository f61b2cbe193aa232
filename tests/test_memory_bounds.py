"""Memory stays flat (issue 15): what a runtime holds does not grow with the jobs that went
through it, the waits that gave up, or the events nobody read. Each case runs in memory and
on a journal; the structures are read through the runtime's core and engine, the one place
they live."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from actorq import Job, Lagged, Runtime, VirtualClock
from actorq._core.finished import COMPACT_AFTER

JOBS = 3 * COMPACT_AFTER


@pytest.fixture(params=["memory", "journal", "postgresql"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Runtime]:
    if request.param == "memory":
        return lambda clock=None: Runtime(clock=clock or VirtualClock())
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        return lambda clock=None: Runtime(url, clock=clock or VirtualClock())
    return lambda clock=None: Runtime(tmp_path / "j", clock=clock or VirtualClock())


async def noop(job: Job) -> None:
    return None


async def test_jobs_removed_on_complete_leave_nothing_behind(
    runtime: Callable[..., Runtime],
) -> None:
    async with runtime() as rt:
        q = rt.queue("q")
        jobs = await q.add_bulk(
            [{"name": "j", "data": i, "remove_on_complete": True} for i in range(JOBS)]
        )
        worker = rt.worker(q, noop, concurrency=16)
        await rt.wait(jobs)
        await worker.close()
        assert (await q.counts())["completed"] == 0
        core = rt._core
        assert core.jobs == {}
        assert len(core.queues["q"].completed) == 0


# ---------------------------------------------------------------- waits that gave up


@pytest.mark.parametrize("timeout", [0, 5])
async def test_a_timed_out_wait_until_finished_leaves_no_waiter(
    runtime: Callable[..., Runtime], timeout: float
) -> None:
    async with runtime() as rt:
        q = rt.queue("q")
        await q.pause()
        job = await q.add("never")
        for _ in range(3):
            with pytest.raises(TimeoutError):
                await job.wait_until_finished(timeout=timeout)
        assert rt._engine is not None
        assert rt._engine.waiters == {}
        # The job itself is untouched: a wait that does not give up still gets its end.
        rt.worker(q, noop)
        await q.resume()
        assert await job.wait_until_finished(timeout=60) is None


@pytest.mark.parametrize("timeout", [1e-9, 5])
async def test_a_timed_out_get_next_job_leaves_no_fetcher(
    runtime: Callable[..., Runtime], timeout: float
) -> None:
    async with runtime() as rt:
        q = rt.queue("q")
        w = rt.worker(q)
        for _ in range(3):
            assert await w.get_next_job("t", timeout=timeout) is None
        assert rt._engine is not None
        assert rt._engine.fetchers == {}
        # Nothing was locked for the consumers that gave up: the next job goes to the next.
        await q.add("x")
        job = await w.get_next_job("t", timeout=timeout)
        assert job is not None and job.name == "x"


async def test_a_cancelled_wait_leaves_no_waiter(runtime: Callable[..., Runtime]) -> None:
    async with runtime(VirtualClock(autojump=False)) as rt:
        q = rt.queue("q")
        await q.pause()
        job = await q.add("never")
        w = rt.worker(q)
        async with anyio.create_task_group() as tg:
            tg.start_soon(job.wait_until_finished)
            tg.start_soon(w.get_next_job, "t", 60)
            await anyio.wait_all_tasks_blocked()
            assert rt._engine is not None
            assert rt._engine.waiters and rt._engine.fetchers  # both are waiting
            tg.cancel_scope.cancel()
        assert rt._engine.waiters == {}
        assert rt._engine.fetchers == {}


# ---------------------------------------------------------------- subscribers that never read


async def test_an_unread_subscriber_stays_bounded_and_is_told_what_it_lost(
    runtime: Callable[..., Runtime],
) -> None:
    async with runtime() as rt:
        q = rt.queue("q")
        unread = rt.events(buffer=100)
        everything = rt.events(buffer=10 * JOBS)  # holds every event: the reference
        jobs = await q.add_bulk([{"name": "j", "data": i} for i in range(JOBS)])
        worker = rt.worker(q, noop, concurrency=16)
        await rt.wait(jobs)
        await worker.close()
        assert len(unread) == 100
        published = everything.drain_nowait()
        assert len(published) > 3 * JOBS  # added, active, completed, and drained notices
        got = unread.drain_nowait()
        assert got == [Lagged(len(published) - 100), *published[-100:]]
        unread.close()
        everything.close()
