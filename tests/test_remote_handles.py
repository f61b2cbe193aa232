"""A client's `Job` handles read as live as a local runtime's (docs/remote.md).

After any call through the client returns, every handle it holds shows its job at least as
fresh as the host's state when that call's reply was sent; changes made by others (the
host's own processors, other clients, timers) reach the handles without the client asking.
The handles of one job share one record, and the host watches a job only while the client
holds a record of it.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime

import actorq
from actorq import Job, JobState, Runtime, VirtualClock
from actorq._remote.host import Connection
from actorq._remote.watch import Watchers

TOKEN = "s3cret-token-of-16+chars"


@pytest.fixture
async def host() -> AsyncIterator[Runtime]:
    async with Runtime(listen="127.0.0.1:0", token=TOKEN) as served:
        yield served


def served(rt: Any) -> Runtime:
    """The runtime whose engine `rt` uses: itself, or the host of a test's client."""
    host: Runtime = getattr(rt, "_served", rt)
    return host


def client(host: Runtime) -> actorq.RemoteRuntime:
    return actorq.connect(f"actorq://{host.address}", token=TOKEN)


def watched(host: Runtime) -> set[int]:
    """The job ids the host's connections watch (none: the engine has no watcher)."""
    engine = host._engine
    assert engine is not None
    watchers = engine.watch
    if watchers is None:
        return set()
    assert isinstance(watchers, Watchers)
    conns: set[Connection] = watchers.connections
    return {job_id for conn in conns for job_id in conn.watched}


async def until(predicate: Any) -> None:
    """Wait, making no call through any client, until `predicate()` holds."""
    with anyio.fail_after(10):
        # Polled: a handle has no event to await, and reading it is what a user does.
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.005)


async def test_the_hosts_own_processor_finishing_a_job_reaches_the_handle(
    make_runtime: MakeRuntime,
) -> None:
    release = anyio.Event()

    async def slow(job: Job[int, int]) -> int:
        await release.wait()
        return job.data * 3

    async with make_runtime() as rt:
        served(rt).worker("h", slow)
        job = await rt.queue("h").add("x", 7)
        await until(lambda: job.state is JobState.ACTIVE)
        assert job.processed_at is not None
        release.set()
        await until(lambda: job.state is JobState.COMPLETED)
        assert job.return_value == 21
        assert job.attempts_made == 1


async def test_another_clients_call_shows_once_this_clients_next_call_returns(
    host: Runtime,
) -> None:
    async with client(host) as first, client(host) as second:
        job = await first.queue("o").add("x", {"n": 1}, delay=60)
        theirs = await second.queue("o").get_job(job.id)
        assert theirs is not None
        await theirs.update_data({"n": 2})
        await second.queue("o").cancel(job.id, reason="from elsewhere")
        # Any reply to this client comes after the news of the jobs it holds.
        await first.queue("other").counts()
        assert job.state is JobState.CANCELLED
        assert job.failed_reason == "from elsewhere"
        assert job.data == {"n": 2}


async def test_a_job_removed_by_retention_reads_as_it_was_last(make_runtime: MakeRuntime) -> None:
    async def echo(job: Job[str, str]) -> str:
        return job.data

    async with make_runtime() as rt:
        served(rt).worker("r", echo)
        q = rt.queue("r")
        job = await q.add("x", "kept", remove_on_complete=True)
        await until(lambda: job.state is JobState.COMPLETED)
        assert await q.get_job(job.id) is None
        assert job.return_value == "kept"
        assert await job.wait_until_finished(timeout=5) == "kept"
        assert job.id not in watched(served(rt))  # a removed job has nothing more to tell


async def test_a_timer_on_the_host_reaches_the_handle(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        job = await rt.queue("t").add("x", None, delay=30)
        assert job.state is JobState.DELAYED
        await clock.advance(31)  # the host promotes it; the client makes no call
        assert job.state is JobState.WAITING


async def test_the_handles_of_one_job_share_one_record(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        q = rt.queue("s")
        added = await q.add("x", 1)
        got = await q.get_job(added.id)
        (listed,) = await q.get_jobs("waiting")
        assert got is not None
        assert added._rec is got._rec is listed._rec
        await got.update_progress({"done": 50})
        assert added.progress == listed.progress == {"done": 50}
        await listed.log("one line")
        assert added.logs == ["one line"]


async def test_read_your_writes_on_every_handle_held(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        q = rt.queue("w")
        jobs = await q.add_bulk([{"name": "x", "data": i, "delay": 60} for i in range(5)])
        await q.promote_jobs()
        assert [job.state for job in jobs] == [JobState.WAITING] * 5
        await q.change_priority(jobs[2].id, 9)
        assert jobs[2].priority == 9


async def test_a_dropped_handle_stops_being_watched(host: Runtime) -> None:
    async with client(host) as rt:
        q = rt.queue("d")
        kept = await q.add("x", 1)
        dropped = [await q.add("x", i) for i in range(3)]
        assert watched(host) == {kept.id, *(job.id for job in dropped)}
        del dropped
        gc.collect()
        await q.counts()  # the next message tells the host
        assert watched(host) == {kept.id}
        del kept
        gc.collect()
        await q.counts()
        assert watched(host) == set()
        engine = host._engine
        assert engine is not None
        # Nothing watched: the engine is back to no watcher and, in memory, no records.
        assert engine.watch is None
        assert engine.core.changes is None


async def test_a_client_that_reconnects_watches_its_jobs_again(host: Runtime) -> None:
    async with client(host) as rt:
        q = rt.queue("c")
        job = await q.add("x", 1)
        link = rt._link
        assert link is not None
        await link.stream.aclose()
        await host.queue("c").cancel(job.id, reason="while away")
        with anyio.fail_after(10):
            while True:
                try:
                    await q.counts()
                    break
                except actorq.ConnectionLostError:
                    await anyio.sleep(0.01)
        assert job.state is JobState.CANCELLED
        assert job.failed_reason == "while away"
        await host.queue("c").retry(job.id)
        await q.counts()
        assert job.state is JobState.WAITING
        assert watched(host) == {job.id}
