"""Memory stays flat (issue 15): what a runtime holds does not grow with the jobs that went
through it, the waits that gave up, or the events nobody read. Each case runs in memory, on
a journal (a folder's, PostgreSQL) and through a client of a host (tests/runtimes.py's
makers); the structures are read through the runtime's core and engine, the one place they
live (a client's host's), and through a client its own calls in flight too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from remote_fixture import HostedClient
from runtimes import maker

from actorq import Job, Lagged, Runtime, VirtualClock
from actorq._core.finished import COMPACT_AFTER

JOBS = 3 * COMPACT_AFTER


@pytest.fixture(params=["memory", "journal", "postgresql", "remote"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    if request.param == "memory":
        return lambda clock=None: Runtime(clock=clock or VirtualClock())
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        return lambda clock=None: Runtime(url, clock=clock or VirtualClock())
    if request.param == "remote":
        return lambda clock=None: maker("remote")(clock=clock or VirtualClock())
    return lambda clock=None: Runtime(tmp_path / "j", clock=clock or VirtualClock())


def engine_side(rt: Any) -> Runtime:
    """The runtime whose core and engine hold the jobs: `rt`, or a client's host."""
    return rt._served if isinstance(rt, HostedClient) else rt  # type: ignore[no-any-return]


async def heard_of_it(done: Callable[[], bool]) -> None:
    """Until `done()`: at once in a runtime; through a client, once the host has read the
    client's giving up, which travels after the call's end in the caller."""
    with anyio.fail_after(10):
        while not done():  # noqa: ASYNC110 - the engine's dicts have no event to wait on
            await anyio.sleep(0.01)


async def no_call_in_flight(rt: Any) -> None:
    """A client keeps nothing for calls that ended (their replies, or their giving up,
    once the host said it dropped them)."""
    if isinstance(rt, HostedClient):
        await heard_of_it(lambda: not rt._given_up)
        assert rt._pending == {}


async def noop(job: Job) -> None:
    return None


async def test_jobs_removed_on_complete_leave_nothing_behind(
    runtime: Callable[..., Any],
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
        core = engine_side(rt)._core
        assert core.jobs == {}
        assert len(core.queues["q"].completed) == 0


# ---------------------------------------------------------------- waits that gave up


@pytest.mark.parametrize("timeout", [0, 5])
async def test_a_timed_out_wait_until_finished_leaves_no_waiter(
    runtime: Callable[..., Any], timeout: float
) -> None:
    async with runtime() as rt:
        q = rt.queue("q")
        await q.pause()
        job = await q.add("never")
        for _ in range(3):
            with pytest.raises(TimeoutError):
                await job.wait_until_finished(timeout=timeout)
        engine = engine_side(rt)._engine
        assert engine is not None
        await heard_of_it(lambda: not engine.waiters)
        await no_call_in_flight(rt)
        # The job itself is untouched: a wait that does not give up still gets its end.
        rt.worker(q, noop)
        await q.resume()
        assert await job.wait_until_finished(timeout=60) is None


@pytest.mark.parametrize("timeout", [1e-9, 5])
async def test_a_timed_out_get_next_job_leaves_no_fetcher(
    runtime: Callable[..., Any], timeout: float
) -> None:
    async with runtime() as rt:
        q = rt.queue("q")
        w = rt.worker(q)
        for _ in range(3):
            assert await w.get_next_job("t", timeout=timeout) is None
        engine = engine_side(rt)._engine
        assert engine is not None
        await heard_of_it(lambda: not engine.fetchers)
        await no_call_in_flight(rt)
        # Nothing was locked for the consumers that gave up: the next job goes to the next.
        await q.add("x")
        job = await w.get_next_job("t", timeout=timeout)
        assert job is not None and job.name == "x"


async def test_a_cancelled_wait_leaves_no_waiter(
    runtime: Callable[..., Any],
) -> None:
    async with runtime(VirtualClock(autojump=False)) as rt:
        q = rt.queue("q")
        await q.pause()
        job = await q.add("never")
        w = rt.worker(q)
        async with anyio.create_task_group() as tg:
            tg.start_soon(job.wait_until_finished)
            tg.start_soon(w.get_next_job, "t", 60)
            engine = engine_side(rt)._engine
            assert engine is not None
            with anyio.fail_after(10):  # through a client, until both calls reached the host
                while not (engine.waiters and engine.fetchers):
                    await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        await heard_of_it(lambda: not engine.waiters and not engine.fetchers)
        await no_call_in_flight(rt)


# ---------------------------------------------------------------- subscribers that never read


async def test_an_unread_subscriber_stays_bounded_and_is_told_what_it_lost(
    runtime: Callable[..., Any],
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
