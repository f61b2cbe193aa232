"""What a prerequisite's or barrier holder's end does to the jobs waiting on it: a final
failure, a cancel or a removal cancels them transitively, each naming its cause; a failure
that will be retried does nothing."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime

from actorq import (
    DependsOn,
    Job,
    JobCancelledError,
    JobFailedError,
    JobState,
    Runtime,
    VirtualClock,
)

B, C, X = JobState.BLOCKED, JobState.COMPLETED, JobState.CANCELLED

#: State that must hold on every kind of runtime, PostgreSQL's journal included.
pytestmark = pytest.mark.runtimes("local", "remote", "postgresql")


async def explode(job: Job) -> None:
    raise ValueError("kaput")


def flaky(failures: int, seen: list[tuple[int, JobState]], watched: list[Job]) -> Any:
    """Fail the first `failures` attempts; record each watched job's state at every start."""

    async def run(job: Job) -> str:
        for other in watched:
            seen.append((job.attempts_started, other.state))
        if job.attempts_started <= failures:
            raise ValueError(f"attempt {job.attempts_started}")
        return "ok"

    return run


async def build_chain(rt: Runtime, **a_options: Any) -> tuple[Job, Job, Job, Job]:
    """A → B → C (C in another queue), plus an unrelated job U; none of the dependents run."""
    aq, bq, cq = rt.queue("a"), rt.queue("b"), rt.queue("c")
    a = await aq.add("a", **a_options)
    b = await bq.add("b", depends_on=DependsOn(job_ids=[a.id]))
    c = await cq.add("c", depends_on=DependsOn(job_ids=[b.id]))
    u = await bq.add("unrelated")
    assert (b.state, c.state) == (B, B)
    return a, b, c, u


async def assert_cascaded(a: Job, b: Job, c: Job, u: Job, verb: str) -> None:
    assert (b.state, c.state) == (X, X)
    assert b.failed_reason == f"prerequisite job {a.id} {verb}"
    assert c.failed_reason == f"prerequisite job {b.id} was cancelled"
    assert u.state is JobState.WAITING
    with anyio.fail_after(5):
        for job in (b, c):
            with pytest.raises(JobCancelledError):
                await job.wait_until_finished()


async def test_final_failure_cancels_dependents_transitively(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        a, b, c, u = await build_chain(rt, attempts=2)
        seen: list[tuple[int, JobState]] = []
        rt.worker("a", flaky(99, seen, [b, c]))
        with anyio.fail_after(5), pytest.raises(JobFailedError):
            await a.wait_until_finished()
        assert a.attempts_made == 2
        # during the retry the dependents were still blocked, not cancelled
        assert seen == [(1, B), (1, B), (2, B), (2, B)]
        await assert_cascaded(a, b, c, u, "failed")
        assert (await rt.queue("b").counts())["cancelled"] == 1
        assert (await rt.queue("c").counts())["cancelled"] == 1


async def test_cancel_cancels_dependents_transitively(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        a, b, c, u = await build_chain(rt)
        await rt.queue("a").cancel(a.id, reason="changed my mind")
        assert a.failed_reason == "changed my mind"
        await assert_cascaded(a, b, c, u, "was cancelled")


async def test_remove_cancels_dependents_transitively(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        a, b, c, u = await build_chain(rt, delay=30)
        await rt.queue("a").remove(a.id)
        assert await rt.queue("a").get_job(a.id) is None
        await assert_cascaded(a, b, c, u, "was removed")


async def test_cascade_spares_dependents_already_released(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("q")
        first = await q.add("first")
        second = await q.add("second")
        both = await q.add("both", depends_on=DependsOn(job_ids=[first.id, second.id]))
        only_first = await q.add("only-first", depends_on=DependsOn(job_ids=[first.id]))
        w = rt.worker(q, lock_duration=10_000)
        held = await w.get_next_job("tok")
        assert held is not None and held.id == first.id
        await held.move_to_completed(None, "tok", fetch_next=False)
        assert only_first.state is JobState.WAITING
        assert both.state is B
        await q.cancel(second.id)
        assert both.state is X
        assert both.failed_reason == f"prerequisite job {second.id} was cancelled"
        assert only_first.state is JobState.WAITING  # already released: untouched


async def test_barrier_holder_final_failure_cancels_the_barrier_waiters(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        hq, wq = rt.queue("holders"), rt.queue("waiters")
        holder = await hq.add("holder", tags=["t", "x"])
        bystander = await hq.add("bystander", tags=["u"], delay=50)
        waiter = await wq.add("waiter", depends_on=DependsOn(tags=["t"]))
        after = await wq.add("after", depends_on=DependsOn(job_ids=[waiter.id]))
        elsewhere = await wq.add("elsewhere", depends_on=DependsOn(tags=["u"]))
        assert (waiter.state, after.state, elsewhere.state) == (B, B, B)
        rt.worker(hq, explode)
        with anyio.fail_after(5), pytest.raises(JobFailedError):
            await holder.wait_until_finished()
        assert waiter.state is X
        assert waiter.failed_reason == f"job {holder.id} holding barrier [t] failed"
        assert after.state is X
        assert after.failed_reason == f"prerequisite job {waiter.id} was cancelled"
        assert elsewhere.state is B  # a barrier the failed job did not hold
        assert bystander.state is JobState.DELAYED


async def test_barrier_holder_cancel_cancels_the_barrier_waiters(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        hq, wq = rt.queue("holders"), rt.queue("waiters")
        holder = await hq.add("holder", tags=["t"])
        waiter = await wq.add("waiter", depends_on=DependsOn(tags=["t"]))
        await hq.cancel(holder.id)
        assert waiter.state is X
        assert waiter.failed_reason == f"job {holder.id} holding barrier [t] was cancelled"


async def test_no_cascade_while_retries_remain(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        pq, dq = rt.queue("pre"), rt.queue("dep")
        pre = await pq.add("pre", attempts=3)
        dep = await dq.add("dep", depends_on=DependsOn(job_ids=[pre.id]))
        ran: list[int] = []

        async def record(job: Job) -> None:
            ran.append(job.id)

        rt.worker(dq, record)
        seen: list[tuple[int, JobState]] = []
        rt.worker(pq, flaky(2, seen, [dep]))
        with anyio.fail_after(5):
            assert await pre.wait_until_finished() == "ok"
            await dep.wait_until_finished()
        assert pre.attempts_made == 3
        assert seen == [(1, B), (2, B), (3, B)]
        assert dep.state is C
        assert ran == [dep.id]


async def test_barrier_holder_retrying_keeps_holding_without_cascade(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        hq, wq = rt.queue("holders"), rt.queue("waiters")
        holder = await hq.add("holder", tags=["t"], attempts=3)
        waiter = await wq.add("waiter", depends_on=DependsOn(tags=["t"]))
        rt.worker(wq, lambda job: None, run_in_thread=True)
        seen: list[tuple[int, JobState]] = []
        rt.worker(hq, flaky(2, seen, [waiter]))
        with anyio.fail_after(5):
            await holder.wait_until_finished()
            await waiter.wait_until_finished()
        assert seen == [(1, B), (2, B), (3, B)]
        assert waiter.state is C
        assert waiter.processed_at is not None and holder.finished_at is not None
        assert waiter.processed_at >= holder.finished_at
