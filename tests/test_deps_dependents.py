"""`job.get_dependents()`: the other way from `get_dependencies()` — the jobs listing a job
in `depends_on`, those still blocked on it, and the tag-drain barriers it holds with their
waiters; in memory, and after a journal folder is reopened (replayed, and from a
snapshot), with the index equal to one rebuilt from the records; locally, through a client
(whose host restarts) and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime, RuntimeLives

from actorq import DependsOn, Job, JobState, Runtime, VirtualClock
from actorq._core import commands as c
from actorq._core.records import JobSpec
from actorq._core.state import CoreState

B = JobState.BLOCKED

pytestmark = pytest.mark.runtimes("local", "remote", "postgresql")


#: Why the snapshot variants stay off the remote kind.
SNAPSHOT_CALL = "Runtime.snapshot is the runtime's own call: a client cannot ask its host for one"

Setup = Callable[[Any], Awaitable[dict[str, int]]]
Check = Callable[[Any, dict[str, int]], Awaitable[None]]


async def _in_one_world(
    make_runtime: MakeRuntime,
    runtime_lives: RuntimeLives,
    reopen: str,
    setup: Setup,
    check: Check,
) -> None:
    """`setup` then `check` in one runtime (``reopen="no"``), or `check` after the journal
    is reopened in the next life (``"journal"``: replayed; ``"snapshot"``: from one)."""
    if reopen == "no":
        async with make_runtime(clock=VirtualClock()) as rt:
            await check(rt, await setup(rt))
        return
    async with runtime_lives(clock=VirtualClock()) as life:
        async with life() as rt:
            ids = await setup(rt)
            if reopen == "snapshot":
                await rt.snapshot()
        async with life() as rt:
            await check(rt, ids)


def _indexes_rebuild_equal(rt: Any) -> None:
    """The relation index equals one rebuilt from the records (the engine's, so only where
    the test holds the engine itself)."""
    if isinstance(rt, Runtime):
        assert rt._core.index_view() == rt._core.rebuild_indexes().index_view()


async def _dependents(rt: Any, queue: str, job_id: int) -> dict[str, Any]:
    job = await rt.queue(queue).get_job(job_id)
    assert job is not None
    return await job.get_dependents()


async def _diamond(rt: Any) -> dict[str, int]:
    q = rt.queue("etl")
    a = await q.add("a")
    b = await q.add("b", depends_on=DependsOn(job_ids=[a.id]))
    c = await q.add("c", depends_on=DependsOn(job_ids=[a.id]))
    d = await q.add("d", depends_on=DependsOn(job_ids=[b.id, c.id]))
    unrelated = await q.add("unrelated")
    return {"a": a.id, "b": b.id, "c": c.id, "d": d.id, "unrelated": unrelated.id}


async def _diamond_dependents(rt: Any, ids: dict[str, int]) -> None:
    assert await _dependents(rt, "etl", ids["a"]) == {
        "job_ids": [ids["b"], ids["c"]],
        "blocked_job_ids": [ids["b"], ids["c"]],
        "barriers": [],
    }
    assert (await _dependents(rt, "etl", ids["b"]))["job_ids"] == [ids["d"]]
    assert await _dependents(rt, "etl", ids["d"]) == {
        "job_ids": [],
        "blocked_job_ids": [],
        "barriers": [],
    }
    assert (await _dependents(rt, "etl", ids["unrelated"]))["job_ids"] == []

    async def run(job: Job) -> str:
        return job.name

    rt.worker("etl", run)
    with anyio.fail_after(10):
        finished = await rt.queue("etl").get_job(ids["d"])
        assert finished is not None
        await finished.wait_until_finished()
    after = await _dependents(rt, "etl", ids["a"])
    assert after == {"job_ids": [ids["b"], ids["c"]], "blocked_job_ids": [], "barriers": []}
    _indexes_rebuild_equal(rt)


@pytest.mark.parametrize("reopen", ["no", "journal"])
async def test_a_diamond_reports_its_dependents_before_and_after_completion(
    make_runtime: MakeRuntime, runtime_lives: RuntimeLives, reopen: str
) -> None:
    await _in_one_world(make_runtime, runtime_lives, reopen, _diamond, _diamond_dependents)


@pytest.mark.runtimes("local", "postgresql", why=SNAPSHOT_CALL)
async def test_a_diamond_reports_its_dependents_from_a_snapshot(
    make_runtime: MakeRuntime, runtime_lives: RuntimeLives
) -> None:
    await _in_one_world(make_runtime, runtime_lives, "snapshot", _diamond, _diamond_dependents)


async def _barriers(rt: Any) -> dict[str, int]:
    q = rt.queue("imports")
    holder = await q.add("load", tags=["import", "eu"])
    other = await q.add("load", tags=["import"])
    waiter = await q.add("report", depends_on=DependsOn(tags=["import"]))
    narrow = await q.add("eu-report", depends_on=DependsOn(tags=["import", "eu"]))
    return {"holder": holder.id, "other": other.id, "waiter": waiter.id, "narrow": narrow.id}


async def _barrier_waiters(rt: Any, ids: dict[str, int]) -> None:
    assert (await _dependents(rt, "imports", ids["holder"]))["barriers"] == [
        {"tags": ["eu", "import"], "waiting_job_ids": [ids["narrow"]]},
        {"tags": ["import"], "waiting_job_ids": [ids["waiter"]]},
    ]
    assert (await _dependents(rt, "imports", ids["other"]))["barriers"] == [
        {"tags": ["import"], "waiting_job_ids": [ids["waiter"]]}
    ]
    assert (await _dependents(rt, "imports", ids["waiter"]))["barriers"] == []
    manual = rt.worker("imports")
    taken = await manual.get_next_job("t")
    assert taken is not None and taken.id == ids["holder"]
    await taken.move_to_completed(None, "t", fetch_next=False)
    assert (await _dependents(rt, "imports", ids["holder"]))["barriers"] == []
    released = await rt.queue("imports").get_job(ids["narrow"])
    assert released is not None and released.state is JobState.WAITING
    assert (await _dependents(rt, "imports", ids["other"]))["barriers"] == [
        {"tags": ["import"], "waiting_job_ids": [ids["waiter"]]}
    ]


@pytest.mark.parametrize("reopen", ["no", "journal"])
async def test_a_barrier_holder_reports_the_jobs_waiting_for_it_to_drain(
    make_runtime: MakeRuntime, runtime_lives: RuntimeLives, reopen: str
) -> None:
    await _in_one_world(make_runtime, runtime_lives, reopen, _barriers, _barrier_waiters)


@pytest.mark.runtimes("local", "postgresql", why=SNAPSHOT_CALL)
async def test_a_barrier_holder_reports_its_waiters_from_a_snapshot(
    make_runtime: MakeRuntime, runtime_lives: RuntimeLives
) -> None:
    await _in_one_world(make_runtime, runtime_lives, "snapshot", _barriers, _barrier_waiters)


async def test_removal_keeps_the_listing_of_a_removed_prerequisite_and_drops_a_dependent(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("q")
        a = await q.add("a")
        b = await q.add("b", depends_on=DependsOn(job_ids=[a.id]))
        c = await q.add("c", depends_on=DependsOn(job_ids=[a.id]))
        await q.remove(c.id)
        assert (await a.get_dependents())["job_ids"] == [b.id]
        await q.remove(a.id)  # b is cancelled, naming a; it still lists a
        assert (await q.get_job(b.id)).state is JobState.CANCELLED  # type: ignore[union-attr]
        gone = await a.get_dependents()
        assert gone == {"job_ids": [b.id], "blocked_job_ids": [], "barriers": []}
        _indexes_rebuild_equal(rt)


async def test_a_completed_prerequisite_retried_by_hand_blocks_its_dependents_again(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("q")
        a = await q.add("a")
        z = await q.add("z", delay=60)
        b = await q.add("b", depends_on=DependsOn(job_ids=[a.id, z.id]))
        ran: list[str] = []

        async def run(job: Job) -> None:
            ran.append(job.name)

        worker = rt.worker("q", run)
        with anyio.fail_after(10):
            await a.wait_until_finished()
        await worker.close()
        assert (await a.get_dependents())["blocked_job_ids"] == []
        await q.retry(a.id)  # a runs again: b waits on it again
        assert (await a.get_dependents())["blocked_job_ids"] == [b.id]
        await q.promote(z.id)
        rt.worker("q", run)
        with anyio.fail_after(10):
            await b.wait_until_finished()
        assert ran.index("b") > ran.index("a", 1) and ran.index("b") > ran.index("z")
        _indexes_rebuild_equal(rt)


def test_the_core_answers_from_its_relation_index_and_replay_rebuilds_it() -> None:
    core = CoreState()
    core.record_changes(True)
    # b refers forward, to the batch's second job: a is created first, b lists it
    (b, _), (a, _) = core.add(
        [JobSpec("b", "q", b"{}", depends_on_batch_refs=(1,)), JobSpec("a", "q", b"{}")], 0.0
    )
    assert core.handle(c.GetDependents(a.id), 0.0) == {
        "job_ids": [b.id],
        "blocked_job_ids": [b.id],
        "barriers": [],
    }
    replayed = CoreState()
    replayed.apply_changes(core.take_effects()[0])
    assert replayed.handle(c.GetDependents(a.id), 0.0)["job_ids"] == [b.id]
    core.remove(b.id, 0.0)
    assert core.handle(c.GetDependents(a.id), 0.0)["job_ids"] == []
    assert core.blocking.listed_by == {}
