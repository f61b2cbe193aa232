"""Tag-drain barriers (`DependsOn(tags=...)`), their AND with job ids, delays on either side
of a dependency, and barrier deadlocks refused at add."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime

from actorq import (
    DependsOn,
    InvalidDependencyError,
    Job,
    JobState,
    Queue,
    VirtualClock,
    Worker,
)

W, D, B, C = JobState.WAITING, JobState.DELAYED, JobState.BLOCKED, JobState.COMPLETED
TOKEN = "holder"


def recorder(ran: list[int]) -> Any:
    async def record(job: Job) -> None:
        ran.append(job.id)

    return record


async def take_all(w: Worker, n: int) -> dict[int, Job]:
    """Lock the next `n` jobs of the manual worker's queue; keyed by id."""
    held: dict[int, Job] = {}
    for _ in range(n):
        job = await w.get_next_job(TOKEN)
        assert job is not None
        held[job.id] = job
    return held


async def blocking_ids(job: Job) -> list[int]:
    deps = await job.get_dependencies()
    result: list[int] = deps["blocking_job_ids"]
    return result


async def wait_done(*jobs: Job) -> None:
    with anyio.fail_after(5):
        for job in jobs:
            await job.wait_until_finished()


# ---------------------------------------------------------------- tag drain


async def test_barrier_held_by_supersets_released_by_the_last_holder(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        hq, dq = rt.queue("holders"), rt.queue("dependents")
        h1 = await hq.add("h1", tags=["t"])
        h2 = await hq.add("h2", tags=["t", "u"])
        h3 = await hq.add("h3", tags=["u"])
        ran: list[int] = []
        rt.worker(dq, recorder(ran))
        dep = await dq.add("dep", depends_on=DependsOn(tags=["t"]))
        assert dep.state is B
        assert await blocking_ids(dep) == [h1.id, h2.id]

        held = await take_all(rt.worker(hq, lock_duration=10_000), 3)
        assert dep.state is B  # active holders still hold it
        await held[h3.id].move_to_completed(None, TOKEN, fetch_next=False)
        assert dep.state is B  # ["u"] never held it
        await held[h1.id].move_to_completed(None, TOKEN, fetch_next=False)
        assert dep.state is B
        assert await blocking_ids(dep) == [h2.id]
        assert ran == []
        await held[h2.id].move_to_completed(None, TOKEN, fetch_next=False)
        assert dep.state is not B
        await wait_done(dep)
        assert ran == [dep.id]
        assert dep.processed_at is not None and h2.finished_at is not None
        assert dep.processed_at >= h2.finished_at


async def test_a_disjoint_or_partial_tag_set_does_not_hold_a_barrier(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        hq, dq = rt.queue("holders"), rt.queue("dependents")
        await hq.add("u", tags=["u"])
        await hq.add("t-only", tags=["t"])
        free = await dq.add("free", depends_on=DependsOn(tags=["v"]))
        both = await dq.add("both", depends_on=DependsOn(tags=["t", "u"]))
        assert free.state is W
        assert both.state is W  # no single job carries both t and u
        wide = await hq.add("wide", tags=["t", "u", "z"])
        late = await dq.add("late", depends_on=DependsOn(tags=["u", "t"]))
        assert late.state is B
        assert await blocking_ids(late) == [wide.id]


async def test_any_unfinished_state_holds_the_barrier(make_runtime: MakeRuntime) -> None:
    """Delayed and blocked holders count as well as waiting and active ones."""
    async with make_runtime(clock=VirtualClock()) as rt:
        hq, pq, dq = rt.queue("holders"), rt.queue("pre"), rt.queue("dependents")
        pre = await pq.add("pre")
        delayed = await hq.add("delayed", tags=["t"], delay=100)
        blocked = await hq.add("blocked", tags=["t"], depends_on=DependsOn(job_ids=[pre.id]))
        assert (delayed.state, blocked.state) == (D, B)
        ran: list[int] = []
        rt.worker(dq, recorder(ran))
        dep = await dq.add("dep", depends_on=DependsOn(tags=["t"]))
        assert dep.state is B
        assert await blocking_ids(dep) == [delayed.id, blocked.id]
        rt.worker(hq, recorder(ran))
        rt.worker(pq, recorder(ran))
        await wait_done(pre, delayed, blocked, dep)
        assert ran[-1] == dep.id
        assert dep.processed_at is not None and dep.processed_at >= 100.0


async def test_own_tags_do_not_block_a_job_alone(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("own")
        ran: list[int] = []
        rt.worker(q, recorder(ran))
        solo = await q.add("solo", tags=["t"], depends_on=DependsOn(tags=["t"]))
        assert solo.state is not B
        assert await blocking_ids(solo) == []
        await wait_done(solo)
        assert ran == [solo.id]


async def test_own_tags_do_not_hide_another_holder(make_runtime: MakeRuntime) -> None:
    """A job tagged like its own barrier still waits for *other* holders (its own tags are
    discounted, not everybody's)."""
    async with make_runtime(clock=VirtualClock()) as rt:
        hq, dq = rt.queue("holders"), rt.queue("dependents")
        other = await hq.add("other", tags=["t"])
        me = await dq.add("me", tags=["t", "u"], depends_on=DependsOn(tags=["t"]))
        assert me.state is B
        assert await blocking_ids(me) == [other.id]
        ran: list[int] = []
        rt.worker(dq, recorder(ran))
        held = await take_all(rt.worker(hq, lock_duration=10_000), 1)
        assert me.state is B
        assert ran == []
        await held[other.id].move_to_completed(None, TOKEN, fetch_next=False)
        await wait_done(me)
        assert ran == [me.id]


@pytest.mark.parametrize("first", ["prerequisite", "holder"])
async def test_job_ids_and_tags_are_both_needed(first: str, make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        pq, hq, dq = rt.queue("pre"), rt.queue("holders"), rt.queue("dependents")
        pre = await pq.add("pre")
        holder = await hq.add("holder", tags=["t"])
        ran: list[int] = []
        rt.worker(dq, recorder(ran))
        dep = await dq.add("dep", depends_on=DependsOn(job_ids=[pre.id], tags=["t"]))
        assert dep.state is B
        pw, hw = rt.worker(pq, lock_duration=10_000), rt.worker(hq, lock_duration=10_000)
        p_job, h_job = (await take_all(pw, 1))[pre.id], (await take_all(hw, 1))[holder.id]
        one, two = (p_job, h_job) if first == "prerequisite" else (h_job, p_job)
        await one.move_to_completed(None, TOKEN, fetch_next=False)
        assert dep.state is B
        deps = await dep.get_dependencies()
        if first == "prerequisite":
            assert deps["unmet_job_ids"] == [] and deps["blocking_job_ids"] == [holder.id]
        else:
            assert deps["unmet_job_ids"] == [pre.id] and deps["blocking_job_ids"] == []
        assert ran == []
        await two.move_to_completed(None, TOKEN, fetch_next=False)
        await wait_done(dep)
        assert ran == [dep.id]


# ---------------------------------------------------------------- delays


async def test_delayed_prerequisite_holds_its_dependent_until_due_and_done(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("d")
        pre = await q.add("pre", delay=100)
        dep = await q.add("dep", depends_on=DependsOn(job_ids=[pre.id]))
        assert (pre.state, dep.state) == (D, B)
        ran: list[int] = []
        rt.worker(q, recorder(ran))
        await wait_done(dep)
        assert ran == [pre.id, dep.id]
        assert pre.processed_at == 100.0
        assert pre.finished_at is not None and dep.processed_at is not None
        assert dep.processed_at >= pre.finished_at >= 100.0


async def test_dependent_with_own_delay_released_before_its_run_at_goes_delayed(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        pq, dq = rt.queue("pre"), rt.queue("dep")
        pre = await pq.add("pre")
        dep = await dq.add("dep", delay=50, depends_on=DependsOn(job_ids=[pre.id]))
        assert dep.state is B and dep.run_at == 50.0
        held = await take_all(rt.worker(pq, lock_duration=10_000), 1)
        await held[pre.id].move_to_completed(None, TOKEN, fetch_next=False)
        assert clock.now() < 50.0
        assert dep.state is D and dep.run_at == 50.0
        ran: list[int] = []
        rt.worker(dq, recorder(ran))
        await wait_done(dep)
        assert dep.processed_at == 50.0


async def test_dependent_with_own_delay_released_after_its_run_at_runs_at_once(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        pq, dq = rt.queue("pre"), rt.queue("dep")
        pre = await pq.add("pre")
        dep = await dq.add("dep", delay=50, depends_on=DependsOn(job_ids=[pre.id]))
        await clock.advance(80)
        assert dep.state is B  # its run_at passed, but its prerequisite is not done
        held = await take_all(rt.worker(pq, lock_duration=10_000), 1)
        await held[pre.id].move_to_completed(None, TOKEN, fetch_next=False)
        assert dep.state is W
        ran: list[int] = []
        rt.worker(dq, recorder(ran))
        await wait_done(dep)
        assert dep.processed_at == 80.0


# ---------------------------------------------------------------- deadlocks


async def counts_of(*queues: Queue) -> list[dict[str, int]]:
    return [await q.counts() for q in queues]


async def test_barrier_deadlock_in_one_add_bulk_is_refused(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("m")
        before = await counts_of(q)
        with pytest.raises(InvalidDependencyError) as info:
            await q.add_bulk(
                [
                    {"name": "x", "tags": ["m"], "depends_on": DependsOn(tags=["m"])},
                    {"name": "y", "tags": ["m"], "depends_on": DependsOn(tags=["m"])},
                ]
            )
        assert str(info.value) == (
            "jobs[0].depends_on.tags: the barrier [m] can never clear: "
            "jobs blocked on each other's tags would wait forever"
        )
        assert await counts_of(q) == before
        nxt = await q.add("next")
        assert nxt.id == 1  # the refused batch took no id


async def test_barrier_deadlock_across_two_adds_is_refused(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        pq, q = rt.queue("pre"), rt.queue("m")
        pre = await pq.add("pre")
        # x is blocked (on pre) and carries "m": once y below joined, neither could run.
        x = await q.add("x", tags=["m"], depends_on=DependsOn(job_ids=[pre.id], tags=["m"]))
        assert x.state is B
        before = await counts_of(pq, q)
        with pytest.raises(InvalidDependencyError, match=r"the barrier \[m\] can never clear"):
            await q.add("y", tags=["m"], depends_on=DependsOn(tags=["m"]))
        assert await counts_of(pq, q) == before
        ran: list[int] = []
        rt.worker(pq, recorder(ran))
        rt.worker(q, recorder(ran))
        await wait_done(pre, x)
        assert ran == [pre.id, x.id]


async def test_crossed_barriers_are_refused_but_a_chain_of_barriers_is_not(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("m")
        with pytest.raises(InvalidDependencyError, match=r"the barrier \[n\] can never clear"):
            await q.add_bulk(
                [
                    {"name": "x", "tags": ["m"], "depends_on": DependsOn(tags=["n"])},
                    {"name": "y", "tags": ["n"], "depends_on": DependsOn(tags=["m"])},
                ]
            )
        assert sum((await q.counts()).values()) == 0
        x, y = await q.add_bulk(
            [
                {"name": "x", "tags": ["m"], "depends_on": DependsOn(tags=["n"])},
                {"name": "y", "tags": ["o"], "depends_on": DependsOn(tags=["m"])},
            ]
        )
        assert (x.state, y.state) == (W, B)
        ran: list[int] = []
        rt.worker(q, recorder(ran))
        await wait_done(x, y)
        assert ran == [x.id, y.id]


async def test_a_holder_waiting_on_the_barriers_waiter_is_a_deadlock_refused_at_add(
    make_runtime: MakeRuntime,
) -> None:
    """The new job has no barrier of its own, but it would hold `waiter`'s barrier while
    waiting for `waiter` to complete: neither could ever run."""
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("m")
        first = await q.add("first", tags=["a"])
        waiter = await q.add("waiter", depends_on=DependsOn(tags=["a"]))
        assert waiter.state is B
        before = await counts_of(q)
        with pytest.raises(InvalidDependencyError, match=r"the barrier \[a\] can never clear"):
            await q.add("holder", tags=["a"], depends_on=DependsOn(job_ids=[waiter.id]))
        assert await counts_of(q) == before
        ran: list[int] = []
        rt.worker(q, recorder(ran))
        await wait_done(first, waiter)
        assert ran == [first.id, waiter.id]


async def test_a_later_job_of_the_same_batch_holds_the_barrier(make_runtime: MakeRuntime) -> None:
    """`add_bulk` is one atomic add: a holder later in the batch holds an earlier job's
    barrier, as the deadlock check (which refuses two such jobs holding each other) assumes."""
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("m")
        waiter, holder = await q.add_bulk(
            [
                {"name": "waiter", "depends_on": DependsOn(tags=["t"])},
                {"name": "holder", "tags": ["t", "x"]},
            ]
        )
        assert waiter.state is B
        assert await blocking_ids(waiter) == [holder.id]
        ran: list[int] = []
        rt.worker(q, recorder(ran))
        await wait_done(holder, waiter)
        assert ran == [holder.id, waiter.id]


async def test_deadlock_check_survives_a_removed_completed_prerequisite(
    make_runtime: MakeRuntime,
) -> None:
    """A blocked job whose completed prerequisite was since removed (here by retention) is
    walked by the deadlock check of a later barrier; the add must answer, not crash."""
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("m")
        gone = await q.add("gone", remove_on_complete=True)
        later = await q.add("later", delay=100)
        held = await q.add("held", tags=["a"], depends_on=DependsOn(job_ids=[gone.id, later.id]))
        w = rt.worker(q, lock_duration=10_000)
        job = await w.get_next_job(TOKEN)
        assert job is not None and job.id == gone.id
        await job.move_to_completed(None, TOKEN, fetch_next=False)
        assert await q.get_job(gone.id) is None
        assert held.state is B
        with anyio.fail_after(5):
            waiter = await q.add("waiter", depends_on=DependsOn(tags=["a"]))
        assert waiter.state is B
        assert await blocking_ids(waiter) == [held.id]
