"""Dispatch order: priority (higher first), FIFO within a priority, LIFO on request, pause."""

from __future__ import annotations

from typing import Any

import anyio
from runtimes import MakeRuntime

import actorq
from actorq import Job, Queue, Runtime, VirtualClock


async def run_in_order(
    rt: Runtime, q: Queue, specs: list[dict[str, Any]]
) -> tuple[list[int], list[int], dict[str, int]]:
    """Fill the paused queue with `specs`, then resume it under one worker (concurrency 1).

    Returns the ids in the order `get_jobs("waiting")` gave them before resuming, the ids in
    the order the worker ran them, and a name -> id map.
    """
    ran: list[int] = []

    async def record(job: Job) -> None:
        ran.append(job.id)

    await q.pause()
    ids: dict[str, int] = {}
    for spec in specs:
        options = dict(spec)
        name = options.pop("name")
        ids[name] = (await q.add(name, **options)).id
    rt.worker(q, record, concurrency=1)
    listed = [j.id for j in await q.get_jobs("waiting")]
    await q.resume()
    with anyio.fail_after(5):
        for job_id in ids.values():
            job = await q.get_job(job_id)
            assert job is not None
            await job.wait_until_finished()
    return listed, ran, ids


async def test_higher_priority_runs_first_fifo_within_a_priority(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("p")
        specs: list[dict[str, Any]] = [
            {"name": "low-1", "priority": -1},
            {"name": "mid-1"},
            {"name": "high-1", "priority": 10},
            {"name": "mid-2", "priority": 0},
            {"name": "high-2", "priority": 10},
            {"name": "five", "priority": 5},
            {"name": "mid-3"},
            {"name": "low-2", "priority": -1},
        ]
        listed, ran, ids = await run_in_order(rt, q, specs)
        expected = [
            ids[n]
            for n in ("high-1", "high-2", "five", "mid-1", "mid-2", "mid-3", "low-1", "low-2")
        ]
        assert ran == expected
        assert listed == expected


async def test_lifo_job_goes_first_within_its_priority(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("l")
        specs: list[dict[str, Any]] = [
            {"name": "a"},
            {"name": "b"},
            {"name": "urgent", "lifo": True},
            {"name": "c"},
            {"name": "later-urgent", "lifo": True},
            {"name": "high", "priority": 1},
        ]
        listed, ran, ids = await run_in_order(rt, q, specs)
        expected = [ids[n] for n in ("high", "later-urgent", "urgent", "a", "b", "c")]
        assert ran == expected
        assert listed == expected


async def test_plain_fifo_order(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("f")
        specs: list[dict[str, Any]] = [{"name": f"j{i}"} for i in range(20)]
        listed, ran, ids = await run_in_order(rt, q, specs)
        assert ran == [ids[f"j{i}"] for i in range(20)]
        assert listed == ran
        assert ran == sorted(ran)  # ids increase


async def test_paused_queue_dispatches_nothing_and_resume_runs_the_jobs(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("paused")
        ran: list[int] = []

        async def record(job: Job) -> str:
            ran.append(job.id)
            return "done"

        await q.pause()
        rt.worker(q, record, concurrency=4)
        jobs = [await q.add("j", i) for i in range(5)]
        await clock.run_until_idle()
        await clock.advance(3600)
        assert ran == []
        assert all(j.state is actorq.JobState.WAITING for j in jobs)
        counts = await q.counts()
        assert counts["waiting"] == 5
        assert counts["active"] == 0
        assert [j.id for j in await q.get_jobs("waiting")] == [j.id for j in jobs]

        await q.resume()
        with anyio.fail_after(5):
            for job in jobs:
                assert await job.wait_until_finished() == "done"
        assert sorted(ran) == [j.id for j in jobs]
        assert (await q.counts())["completed"] == 5


async def test_pausing_stops_later_dispatch_but_not_other_queues(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        a, b = rt.queue("a"), rt.queue("b")
        ran: list[str] = []

        async def record(job: Job) -> None:
            ran.append(job.queue)

        rt.worker(a, record)
        rt.worker(b, record)
        await a.pause()
        ja = await a.add("x")
        jb = await b.add("x")
        with anyio.fail_after(5):
            await jb.wait_until_finished()
        await clock.run_until_idle()
        assert ran == ["b"]
        assert ja.state is actorq.JobState.WAITING
        await a.resume()
        with anyio.fail_after(5):
            await ja.wait_until_finished()
        assert ran == ["b", "a"]


async def test_get_jobs_waiting_is_dispatch_order_with_mixed_options(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("mix")
        await q.pause()
        j1 = await q.add("a", priority=2)
        j2 = await q.add("b")
        j3 = await q.add("c", priority=2, lifo=True)
        j4 = await q.add("d", priority=-5)
        j5 = await q.add("e", lifo=True)
        listed = [j.id for j in await q.get_jobs("waiting")]
        assert listed == [j3.id, j1.id, j5.id, j2.id, j4.id]
        # start/end slice the same order
        assert [j.id for j in await q.get_jobs("waiting", start=1, end=3)] == [j1.id, j5.id]
