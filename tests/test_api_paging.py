"""`Queue.get_jobs_page` and `Queue.is_paused`: the queries the dashboard pages with. Every
job of a state comes exactly once across the pages, in the documented order, and a page
reads a bounded part of the index (a filtered page may come back short, with a cursor)."""

from __future__ import annotations

import pytest
from runtimes import MakeRuntime

from actorq import InvalidOptionError, Job, JobState, Queue
from actorq._core import commands as c


async def _all_pages(q: Queue, state: str, limit: int, **kw: object) -> list[list[int]]:
    pages: list[list[int]] = []
    cursor = None
    while True:
        jobs, cursor = await q.get_jobs_page(state, cursor=cursor, limit=limit, **kw)
        pages.append([j.id for j in jobs])
        if cursor is None:
            return pages


async def test_waiting_pages_come_in_dispatch_order_each_job_once(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime() as rt:
        q = rt.queue("q")
        ids = [(await q.add(f"j{i}", priority=i % 2)).id for i in range(7)]
        await rt.queue("other").add("not mine")
        pages = await _all_pages(q, "waiting", 3)
        flat = [i for page in pages for i in page]
        expected = [j.id for j in await q.get_jobs("waiting")]
        assert flat == expected
        assert sorted(flat) == ids
        assert all(len(p) <= 3 for p in pages)


async def test_finished_pages_come_newest_first_and_unindexed_states_by_id(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime() as rt:
        q = rt.queue("q")

        async def ok(job: Job) -> int:
            return job.id

        jobs = [await q.add("j") for _ in range(5)]
        worker = rt.worker("q", ok)
        for job in jobs:
            await job.wait_until_finished()
        await worker.close()
        finished = await _all_pages(q, "completed", 2)
        assert [i for p in finished for i in p] == [j.id for j in reversed(jobs)]
        cancelled = [await q.add("c") for _ in range(4)]
        for job in cancelled:
            await job.cancel()
        pages = await _all_pages(q, "cancelled", 3)
        assert [i for p in pages for i in p] == [j.id for j in reversed(cancelled)]


async def test_filters_and_the_budget_bound_a_page(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        q = rt.queue("q")
        for i in range(10):
            await q.add("a" if i % 3 else "b", tags=["t"] if i % 2 else [])
        jobs, cursor = await q.get_jobs_page("waiting", name="b")
        assert [j.name for j in jobs] == ["b"] * 4 and cursor is None
        jobs, cursor = await q.get_jobs_page("waiting", tag="t")
        assert all("t" in j.tags for j in jobs) and len(jobs) == 5
        # A page reads at most `budget` index entries: a short page says where to go on.
        # The budget is the command's, not the public call's: sent as the handle would.
        page = c.GetPage("q", JobState.WAITING, None, 50, "b", None, 4)
        recs, cursor = await rt._send(page)
        assert len(recs) == 2 and cursor == 4
        recs, cursor = await rt._send(c.GetPage("q", JobState.WAITING, cursor, 50, "b", None, 4))
        assert len(recs) == 1 and cursor == 8


async def test_is_paused_and_bad_arguments(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        q = rt.queue("q")
        assert await q.is_paused() is False
        await q.pause()
        assert await q.is_paused() is True
        await q.resume()
        assert await q.is_paused() is False
        assert await rt.queue("never-used").is_paused() is False
        with pytest.raises(InvalidOptionError):
            await q.get_jobs_page("nope")
        with pytest.raises(InvalidOptionError):
            await q.get_jobs_page("waiting", limit=0)
        with pytest.raises(InvalidOptionError):
            await q.get_jobs_page("waiting", cursor=-1)
