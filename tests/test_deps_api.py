"""Job dependencies through the public API: chains, diamonds with `batch_ref`, every rejection
at add (with its message, nothing enqueued), `add_bulk` atomicity, and what a job reports
about its prerequisites (`depends_on_*`, `get_dependencies()`, `get_jobs("blocked")`)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime

from actorq import (
    DependsOn,
    InvalidDependencyError,
    InvalidOptionError,
    Job,
    JobFailedError,
    JobState,
    Queue,
    VirtualClock,
    batch_ref,
)

B = JobState.BLOCKED


def recorder(ran: list[int]) -> Any:
    async def record(job: Job) -> int:
        ran.append(job.id)
        return job.id

    return record


async def finish_all(jobs: list[Job]) -> None:
    with anyio.fail_after(5):
        for job in jobs:
            await job.wait_until_finished()


# ---------------------------------------------------------------- chains and diamonds


async def test_chain_runs_in_dependency_order_against_priority(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("chain")
        # Priorities say C, B, A: only the dependencies can make the order A, B, C.
        a = await q.add("a", priority=0)
        b = await q.add("b", priority=5, depends_on=DependsOn(job_ids=[a.id]))
        c = await q.add("c", priority=10, depends_on=DependsOn(job_ids=[b.id]))
        assert (a.state, b.state, c.state) == (JobState.WAITING, B, B)
        assert (await q.counts())["blocked"] == 2
        ran: list[int] = []
        rt.worker(q, recorder(ran), concurrency=1)
        await finish_all([a, b, c])
        assert ran == [a.id, b.id, c.id]
        assert [j.state for j in (a, b, c)] == [JobState.COMPLETED] * 3
        assert a.finished_at is not None and b.processed_at is not None
        assert b.processed_at >= a.finished_at


async def test_chain_dependent_stays_blocked_until_its_prerequisite_completes(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("chain")
        a = await q.add("a")
        b = await q.add("b", depends_on=DependsOn(job_ids=[a.id]))
        c = await q.add("c", depends_on=DependsOn(job_ids=[b.id]))
        w = rt.worker(q, lock_duration=1000)
        held = await w.get_next_job("tok")
        assert held is not None and held.id == a.id
        assert await w.get_next_job("tok") is None  # B and C are not takeable
        assert (b.state, c.state) == (B, B)
        await held.move_to_completed("A", "tok", fetch_next=False)
        assert (b.state, c.state) == (JobState.WAITING, B)
        held = await w.get_next_job("tok")
        assert held is not None and held.id == b.id
        assert c.state is B
        await held.move_to_completed("B", "tok", fetch_next=False)
        assert c.state is JobState.WAITING


async def test_diamond_with_batch_refs_to_earlier_jobs(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("diamond")
        a, b, c, d = await q.add_bulk(
            [
                {"name": "a", "priority": 0},
                {"name": "b", "priority": 1, "depends_on": DependsOn(job_ids=[batch_ref(0)])},
                {"name": "c", "priority": 2, "depends_on": DependsOn(job_ids=[batch_ref(0)])},
                {
                    "name": "d",
                    "priority": 9,
                    "depends_on": DependsOn(job_ids=[batch_ref(1), batch_ref(2)]),
                },
            ]
        )
        assert b.depends_on_job_ids == (a.id,)
        assert c.depends_on_job_ids == (a.id,)
        assert d.depends_on_job_ids == (b.id, c.id)
        assert [j.state for j in (a, b, c, d)] == [JobState.WAITING, B, B, B]
        ran: list[int] = []
        rt.worker(q, recorder(ran), concurrency=1)
        await finish_all([a, b, c, d])
        assert ran[0] == a.id
        assert set(ran[1:3]) == {b.id, c.id}
        assert ran[3] == d.id


async def test_diamond_with_batch_refs_to_later_jobs(make_runtime: MakeRuntime) -> None:
    """`batch_ref` may point forward in the batch (DESIGN: "earlier or later in the batch")."""
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("diamond")
        with anyio.fail_after(5):
            d, c, b, a = await q.add_bulk(
                [
                    {"name": "d", "depends_on": DependsOn(job_ids=[batch_ref(2), batch_ref(1)])},
                    {"name": "c", "depends_on": DependsOn(job_ids=[batch_ref(3)])},
                    {"name": "b", "depends_on": DependsOn(job_ids=[batch_ref(3)])},
                    {"name": "a"},
                ]
            )
        assert d.depends_on_job_ids == (b.id, c.id)
        assert b.depends_on_job_ids == (a.id,) and c.depends_on_job_ids == (a.id,)
        assert [j.state for j in (d, c, b)] == [B, B, B]
        ran: list[int] = []
        rt.worker(q, recorder(ran), concurrency=1)
        await finish_all([a, b, c, d])
        assert ran[0] == a.id
        assert ran[3] == d.id


async def test_mixed_existing_id_and_batch_ref(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("mix")
        first = await q.add("first")
        x, y = await q.add_bulk(
            [
                {"name": "x"},
                {"name": "y", "depends_on": DependsOn(job_ids=[first.id, batch_ref(0)])},
            ]
        )
        assert y.depends_on_job_ids == (first.id, x.id)
        assert y.state is B
        ran: list[int] = []
        rt.worker(q, recorder(ran), concurrency=1)
        await finish_all([first, x, y])
        assert ran == [first.id, x.id, y.id]


# ---------------------------------------------------------------- rejections


async def snapshot(q: Queue) -> dict[str, int]:
    return await q.counts()


async def assert_rejected_cleanly(q: Queue, before: dict[str, int]) -> None:
    """Nothing was enqueued (counts equal), and the runtime still accepts a job."""
    assert await q.counts() == before
    probe = await q.add("probe")
    assert probe.state is JobState.WAITING
    await q.remove(probe.id)
    assert await q.counts() == before


async def test_rejects_a_prerequisite_that_does_not_exist(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("r")
        await q.add("existing")
        before = await snapshot(q)
        with pytest.raises(
            InvalidDependencyError, match=r"^depends_on\.job_ids: job 999 does not exist$"
        ):
            await q.add("x", depends_on=DependsOn(job_ids=[999]))
        await assert_rejected_cleanly(q, before)


async def test_rejects_self_dependency_through_batch_ref(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("r")
        before = await snapshot(q)
        with pytest.raises(
            InvalidDependencyError,
            match=r"^jobs\[1\]\.depends_on: a job cannot depend on itself$",
        ):
            await q.add_bulk(
                [{"name": "a"}, {"name": "b", "depends_on": DependsOn(job_ids=[batch_ref(1)])}]
            )
        with pytest.raises(
            InvalidDependencyError, match=r"^depends_on: a job cannot depend on itself$"
        ):
            await q.add_bulk([{"name": "a", "depends_on": DependsOn(job_ids=[batch_ref(0)])}])
        await assert_rejected_cleanly(q, before)


async def test_rejects_a_cycle_of_batch_refs(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("r")
        before = await snapshot(q)
        with pytest.raises(
            InvalidDependencyError,
            match=r"^jobs\[\d\]\.depends_on: batch_ref edges form a cycle through jobs\[\d\]$",
        ):
            await q.add_bulk(
                [
                    {"name": "ok"},
                    {"name": "a", "depends_on": DependsOn(job_ids=[batch_ref(3)])},
                    {"name": "b", "depends_on": DependsOn(job_ids=[batch_ref(1)])},
                    {"name": "c", "depends_on": DependsOn(job_ids=[batch_ref(2), batch_ref(0)])},
                ]
            )
        await assert_rejected_cleanly(q, before)


async def test_rejects_batch_ref_in_a_single_add(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("r")
        before = await snapshot(q)
        # Like every other dependency error (issue 17).
        with pytest.raises(InvalidDependencyError) as info:
            await q.add("x", depends_on=DependsOn(job_ids=[batch_ref(0)]))
        assert str(info.value) == (
            "depends_on.job_ids: BatchRef(index=0): "
            "batch_ref() only refers to jobs of the same add_bulk call"
        )
        await assert_rejected_cleanly(q, before)


async def test_rejects_batch_ref_out_of_range(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("r")
        before = await snapshot(q)
        with pytest.raises(InvalidDependencyError) as info:
            await q.add_bulk(
                [{"name": "a"}, {"name": "b", "depends_on": DependsOn(job_ids=[batch_ref(2)])}]
            )
        expected = "jobs[1].depends_on.job_ids: batch_ref(2) is out of the batch of 2 jobs"
        assert str(info.value) == expected
        await assert_rejected_cleanly(q, before)
        with pytest.raises(InvalidOptionError, match=r"must be an integer >= 0"):
            batch_ref(-1)


async def test_rejects_a_prerequisite_that_already_failed(make_runtime: MakeRuntime) -> None:
    async def explode(job: Job) -> None:
        raise ValueError("nope")

    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("r")
        rt.worker(q, explode)
        doomed = await q.add("doomed")
        with anyio.fail_after(5), pytest.raises(JobFailedError):
            await doomed.wait_until_finished()
        before = await snapshot(q)
        with pytest.raises(InvalidDependencyError) as info:
            await q.add("x", depends_on=DependsOn(job_ids=[doomed.id]))
        assert str(info.value) == (
            f"depends_on.job_ids: job {doomed.id} is already failed, so this job could never run"
        )
        assert await q.counts() == before


async def test_rejects_a_prerequisite_already_cancelled(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("r")
        gone = await q.add("gone", delay=100)
        await q.cancel(gone.id)
        before = await snapshot(q)
        with pytest.raises(InvalidDependencyError) as info:
            await q.add_bulk(
                [{"name": "a"}, {"name": "b", "depends_on": DependsOn(job_ids=[gone.id])}]
            )
        assert str(info.value) == (
            f"jobs[1].depends_on.job_ids: job {gone.id} is already cancelled, "
            "so this job could never run"
        )
        await assert_rejected_cleanly(q, before)


async def test_a_completed_prerequisite_is_accepted_and_does_not_block(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("r")
        rt.worker(q, recorder([]))
        done = await q.add("done")
        await finish_all([done])
        after = await q.add("after", depends_on=DependsOn(job_ids=[done.id]))
        assert after.state is not B
        await finish_all([after])


async def test_add_bulk_is_atomic_and_names_the_bad_index(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("r")
        other = rt.queue("other")
        seed = await q.add("seed")
        before, before_other = await q.counts(), await other.counts()
        with pytest.raises(
            InvalidDependencyError, match=r"^jobs\[2\]\.depends_on\.job_ids: job 4242 does not"
        ):
            await q.add_bulk(
                [
                    {"name": "fine-0"},
                    {"name": "fine-1", "depends_on": DependsOn(job_ids=[seed.id, batch_ref(0)])},
                    {"name": "bad", "depends_on": DependsOn(job_ids=[4242])},
                    {"name": "fine-3", "tags": ["t"]},
                ]
            )
        assert await q.counts() == before
        assert await other.counts() == before_other
        # no id was consumed by the rejected batch
        nxt = await q.add("next")
        assert nxt.id == seed.id + 1


# ---------------------------------------------------------------- what a job reports


async def test_job_reports_its_dependencies_and_unmet_ones(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("rep")
        hq = rt.queue("holders")
        p1 = await q.add("p1")
        p2 = await q.add("p2")
        holder = await hq.add("h", tags=["t", "x"])
        bystander = await hq.add("u", tags=["u"])
        dep = await q.add("dep", depends_on=DependsOn(job_ids=[p1.id, p2.id, p1.id], tags=["t"]))
        assert dep.depends_on_job_ids == (p1.id, p2.id)  # duplicates dropped, order kept
        assert dep.depends_on_tags == ("t",)
        assert dep.state is B
        deps = await dep.get_dependencies()
        assert deps["unmet_job_ids"] == [p1.id, p2.id]
        assert deps["blocking_job_ids"] == [holder.id]
        assert bystander.id not in deps["blocking_job_ids"]
        blocked = await q.get_jobs("blocked")
        assert [j.id for j in blocked] == [dep.id]
        assert [j.id for j in await q.get_jobs(JobState.BLOCKED)] == [dep.id]
        assert (await q.counts())["blocked"] == 1

        w = rt.worker(q, lock_duration=1000)
        held = await w.get_next_job("tok")
        assert held is not None and held.id == p1.id
        await held.move_to_completed(None, "tok", fetch_next=False)
        deps = await dep.get_dependencies()
        assert deps["unmet_job_ids"] == [p2.id]
        assert deps["blocking_job_ids"] == [holder.id]
        assert dep.state is B


async def test_a_job_without_dependencies_reports_none(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("rep")
        job = await q.add("plain", tags=["t"])
        assert job.depends_on_job_ids == () and job.depends_on_tags == ()
        deps = await job.get_dependencies()
        assert deps["unmet_job_ids"] == [] and deps["blocking_job_ids"] == []
        assert await q.get_jobs("blocked") == []
