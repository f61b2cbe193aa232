"""`Queue.get_jobs_page(..., sort="id" | "-id")`: any state's jobs by the order they were
added, either way. Across the pages each job that stays in the state comes exactly once, in
order, while jobs are added and removed between pages; pages read a bounded run of ids
(the core's query, with a small budget); a bad sort is refused naming the field."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from runtimes import MakeRuntime

from actorq import InvalidOptionError, Job, JobState, Queue
from actorq._core import commands as c
from actorq._core.records import JobSpec
from actorq._core.state import CoreState


async def _walk(q: Queue, state: str, sort: Any, limit: int, between: Any = None) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        jobs, cursor = await q.get_jobs_page(state, cursor=cursor, limit=limit, sort=sort)
        assert len(jobs) <= limit
        seen += [j.id for j in jobs]
        if cursor is None:
            return seen
        if between is not None:
            await between()


@pytest.mark.parametrize("state", ["waiting", "completed", "cancelled"])
async def test_both_directions_give_every_job_once_in_id_order(
    state: str, make_runtime: MakeRuntime
) -> None:
    async with make_runtime() as rt:
        q, other = rt.queue("q"), rt.queue("other")
        mine: list[Job] = []
        for i in range(23):
            mine.append(await q.add("j", priority=i % 3))  # dispatch order is not id order
            await other.add("not mine")
        if state == "cancelled":
            for job in mine:
                await job.cancel()
        if state == "completed":

            async def ok(job: Job) -> None:
                return None

            worker = rt.worker("q", ok)
            for job in mine:
                await job.wait_until_finished()
            await worker.close()
        ids = [j.id for j in mine]
        assert await _walk(q, state, "id", 5) == ids
        assert await _walk(q, state, "-id", 5) == ids[::-1]
        natural = await _walk(q, state, None, 5)
        assert sorted(natural) == ids
        if state == "waiting":  # the state's own order differs: priorities first
            assert natural not in (ids, ids[::-1])


async def test_paging_stays_exact_while_jobs_come_and_go(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        q = rt.queue("q")
        first = [await q.add("j") for _ in range(30)]
        doomed = iter(first[10:20:2])  # removed behind and ahead of the cursor
        added: list[int] = []

        async def churn() -> None:
            victim = next(doomed, None)
            if victim is not None:
                await victim.remove()
            added.append((await q.add("late")).id)

        up = await _walk(q, "waiting", "id", 4, churn)
        removed = {j.id for j in first[10:20:2]}
        stayed = {j.id for j in first} - removed
        assert all(a < b for a, b in itertools.pairwise(up))  # in order, none twice
        assert stayed <= set(up)
        assert set(added) <= set(up)  # added above the cursor: met on the way up
        before = set(added)
        down = await _walk(q, "waiting", "-id", 4, churn)
        assert all(a > b for a, b in itertools.pairwise(down))
        assert stayed | before <= set(down)
        assert not set(down) & removed


async def test_a_bad_sort_is_refused_naming_the_field(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        with pytest.raises(InvalidOptionError, match="sort") as info:
            await rt.queue("q").get_jobs_page("waiting", sort="name")  # type: ignore[arg-type]
        assert "'name'" in str(info.value)


def test_the_core_reads_a_bounded_run_of_ids_and_starts_at_the_lowest_alive() -> None:
    core = CoreState()
    recs = [rec for rec, _ in core.add([JobSpec("j", "q", b"{}")] * 40, 0.0)]
    for rec in recs[:25]:
        core.remove(rec.id, 0.0)
    alive = [r.id for r in recs[25:]]

    def pages(sort: str, budget: int) -> list[list[int]]:
        out, cursor = [], None
        while True:
            query = c.GetPage("q", JobState.WAITING, cursor, 50, sort=sort, budget=budget)
            jobs, cursor = core.handle(query, 0.0)
            out.append([r.id for r in jobs])
            if cursor is None:
                return out

    up = pages("id", 4)
    assert up[0] == alive[:4]  # starts at the lowest id alive, not at 1
    assert [i for p in up for i in p] == alive and all(len(p) <= 4 for p in up)
    assert core.lowest_id == alive[0]
    down = pages("-id", 4)
    assert [i for p in down for i in p] == alive[::-1]
    assert max(len(p) for p in down) <= 4


def test_a_runtime_host_refuses_a_clients_page_with_another_sort() -> None:
    from actorq._remote.checks import check_command  # noqa: PLC0415

    check_command(c.GetPage("q", JobState.WAITING, sort="-id"), set())
    with pytest.raises(InvalidOptionError, match="sort") as info:
        check_command(c.GetPage("q", JobState.WAITING, sort="name"), set())
    assert "'name'" in str(info.value)
