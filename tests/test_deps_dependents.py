"""`job.get_dependents()`: the other way from `get_dependencies()` — the jobs listing a job
in `depends_on`, those still blocked on it, and the tag-drain barriers it holds with their
waiters; in memory, and after a journal folder is reopened (replayed, and from a
snapshot), with the index equal to one rebuilt from the records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from actorq import DependsOn, Job, JobState, Runtime, VirtualClock
from actorq._core import commands as c
from actorq._core.records import JobSpec
from actorq._core.state import CoreState

B = JobState.BLOCKED


async def _reopened(rt: Runtime, path: Path | None, snapshot: bool) -> Any:
    """The same world: `rt` itself in memory, or the folder reopened in a new runtime."""
    if path is None:
        return rt
    if snapshot:
        await rt.snapshot()
    await rt.close()
    fresh = Runtime(path=path, clock=VirtualClock(start=rt.clock.now()))
    await fresh.__aenter__()
    return fresh


@pytest.fixture(params=["memory", "journal", "snapshot"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path | None, bool]:
    if request.param == "memory":
        return None, False
    return tmp_path / "jobs", request.param == "snapshot"


async def _dependents(rt: Runtime, queue: str, job_id: int) -> dict[str, Any]:
    job = await rt.queue(queue).get_job(job_id)
    assert job is not None
    return await job.get_dependents()


async def test_a_diamond_reports_its_dependents_before_and_after_completion(
    where: tuple[Path | None, bool],
) -> None:
    path, snapshot = where
    rt = Runtime(path=path, clock=VirtualClock())
    await rt.__aenter__()
    q = rt.queue("etl")
    a = await q.add("a")
    b = await q.add("b", depends_on=DependsOn(job_ids=[a.id]))
    c = await q.add("c", depends_on=DependsOn(job_ids=[a.id]))
    d = await q.add("d", depends_on=DependsOn(job_ids=[b.id, c.id]))
    unrelated = await q.add("unrelated")
    rt = await _reopened(rt, path, snapshot)
    try:
        assert await _dependents(rt, "etl", a.id) == {
            "job_ids": [b.id, c.id],
            "blocked_job_ids": [b.id, c.id],
            "barriers": [],
        }
        assert (await _dependents(rt, "etl", b.id))["job_ids"] == [d.id]
        assert await _dependents(rt, "etl", d.id) == {
            "job_ids": [],
            "blocked_job_ids": [],
            "barriers": [],
        }
        assert (await _dependents(rt, "etl", unrelated.id))["job_ids"] == []

        async def run(job: Job) -> str:
            return job.name

        rt.worker("etl", run)
        with anyio.fail_after(10):
            finished = await rt.queue("etl").get_job(d.id)
            assert finished is not None
            await finished.wait_until_finished()
        after = await _dependents(rt, "etl", a.id)
        assert after == {"job_ids": [b.id, c.id], "blocked_job_ids": [], "barriers": []}
        assert rt._core.index_view() == rt._core.rebuild_indexes().index_view()
    finally:
        await rt.close()


async def test_a_barrier_holder_reports_the_jobs_waiting_for_it_to_drain(
    where: tuple[Path | None, bool],
) -> None:
    path, snapshot = where
    rt = Runtime(path=path, clock=VirtualClock())
    await rt.__aenter__()
    q = rt.queue("imports")
    holder = await q.add("load", tags=["import", "eu"])
    other = await q.add("load", tags=["import"])
    waiter = await q.add("report", depends_on=DependsOn(tags=["import"]))
    narrow = await q.add("eu-report", depends_on=DependsOn(tags=["import", "eu"]))
    rt = await _reopened(rt, path, snapshot)
    try:
        assert (await _dependents(rt, "imports", holder.id))["barriers"] == [
            {"tags": ["eu", "import"], "waiting_job_ids": [narrow.id]},
            {"tags": ["import"], "waiting_job_ids": [waiter.id]},
        ]
        assert (await _dependents(rt, "imports", other.id))["barriers"] == [
            {"tags": ["import"], "waiting_job_ids": [waiter.id]}
        ]
        assert (await _dependents(rt, "imports", waiter.id))["barriers"] == []
        manual = rt.worker("imports")
        taken = await manual.get_next_job("t")
        assert taken is not None and taken.id == holder.id
        await taken.move_to_completed(None, "t", fetch_next=False)
        assert (await _dependents(rt, "imports", holder.id))["barriers"] == []
        released = await rt.queue("imports").get_job(narrow.id)
        assert released is not None and released.state is JobState.WAITING
        assert (await _dependents(rt, "imports", other.id))["barriers"] == [
            {"tags": ["import"], "waiting_job_ids": [waiter.id]}
        ]
    finally:
        await rt.close()


async def test_removal_keeps_the_listing_of_a_removed_prerequisite_and_drops_a_dependent() -> None:
    async with Runtime(clock=VirtualClock()) as rt:
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
        assert rt._core.index_view() == rt._core.rebuild_indexes().index_view()


async def test_a_completed_prerequisite_retried_by_hand_blocks_its_dependents_again() -> None:
    async with Runtime(clock=VirtualClock()) as rt:
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
        assert rt._core.index_view() == rt._core.rebuild_indexes().index_view()


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
