"""Manual processing: `get_next_job` (with and without a timeout), fetch-next chains,
`move_to_failed` retries, concurrent consumers, and `Worker.close` giving held jobs back."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from runtimes import MakeRuntime

from actorq import (
    Backoff,
    Event,
    EventStream,
    InvalidOptionError,
    Job,
    JobStalled,
    JobState,
    JobWaiting,
    Runtime,
    UnrecoverableError,
    VirtualClock,
    Worker,
)


def drain(events: EventStream) -> list[Event]:
    return events.drain_nowait()


#: The test races asyncio's cancel against a reply in one loop turn: through a client the
#: reply comes a socket read later, so the race it needs cannot be set up.
CANCEL_TIMING = "races a cancel against a reply within one loop turn"


async def fetch(worker: Worker, token: str) -> Job:
    job = await worker.get_next_job(token)
    assert job is not None
    return job


# ---------------------------------------------------------------- fetch-next


async def test_fetch_next_chains_through_a_thousand_jobs_under_one_token() -> None:
    clock = VirtualClock()
    async with Runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q)
        added = await q.add_bulk([{"name": "j", "data": i} for i in range(1000)])
        job: Job | None = await fetch(w, "tok")
        seen: list[int] = []
        while job is not None:
            assert job.state is JobState.ACTIVE
            assert job.lock_token == "tok"
            assert job.attempts_started == 1
            seen.append(job.id)
            nxt = await job.move_to_completed({"double": job.data * 2}, "tok")
            assert job.state is JobState.COMPLETED
            job = nxt
        assert seen == [j.id for j in added]  # FIFO, each once, no gap
        assert await w.get_next_job("tok") is None
        counts = await q.counts()
        assert counts["completed"] == 1000
        assert counts["waiting"] == counts["active"] == 0
        assert [j.return_value for j in added[:3]] == [{"double": 0}, {"double": 2}, {"double": 4}]
        assert all(j.attempts_made == 1 and j.stalled_counter == 0 for j in added)
        assert not rt._core.locks
        assert clock.now() == 0.0


async def test_fetch_next_keeps_the_workers_lock_settings(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=7, max_stalled_count=0)
        await q.add_bulk([{"name": "j"} for _ in range(2)])
        first = await fetch(w, "t")
        await clock.advance(3)
        second = await first.move_to_completed(None, "t")
        assert second is not None
        assert second.lock_expires_at == 10.0
        await clock.advance(7)
        assert second.state is JobState.FAILED  # max_stalled_count=0 carried over
        assert second.stalled_counter == 1


async def test_fetch_next_false_returns_none_and_takes_nothing(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("m")
        w = rt.worker(q)
        await q.add_bulk([{"name": "j"} for _ in range(2)])
        job = await fetch(w, "t")
        assert await job.move_to_completed(1, "t", fetch_next=False) is None
        assert (await q.counts())["waiting"] == 1


async def test_move_to_failed_retries_with_backoff_as_a_processor_does(
    make_runtime: MakeRuntime,
) -> None:
    async def explode(job: Job) -> None:
        raise ValueError("boom")

    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        mq, pq = rt.queue("m"), rt.queue("p")
        w = rt.worker(mq)
        job = await mq.add("j", attempts=2, backoff=10)
        twin = await pq.add("j", attempts=2, backoff=10)
        rt.worker(pq, explode)

        got = await fetch(w, "t")
        assert await got.move_to_failed(ValueError("boom"), "t") is None  # nothing waits
        assert job.state is JobState.DELAYED
        assert job.run_at == 10.0
        assert job.attempts_made == 1
        assert job.failed_reason == "ValueError: boom"
        assert await w.get_next_job("t") is None
        await clock.advance(10)
        assert job.state is JobState.WAITING
        again = await fetch(w, "t")
        assert again.id == job.id and again.attempts_started == 2
        assert await again.move_to_failed(ValueError("boom"), "t") is None
        assert job.state is JobState.FAILED
        await clock.run_until_idle()

        keys = ("state", "attempts_started", "attempts_made", "failed_reason", "finished_at")
        assert twin.state is JobState.FAILED
        assert {k: getattr(job, k) for k in keys} == {k: getattr(twin, k) for k in keys}
        assert job.finished_at == 10.0
        assert job.stalled_counter == 0


async def test_move_to_failed_without_backoff_requeues_and_fetch_next_gets_it(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("m")
        w = rt.worker(q)
        job = await q.add("j", attempts=3)
        got = await fetch(w, "t")
        nxt = await got.move_to_failed("first", "t")
        assert nxt is not None and nxt.id == job.id  # back to waiting, fetched at once
        assert nxt.attempts_started == 2 and nxt.attempts_made == 1
        assert nxt.failed_reason == "first"


async def test_exponential_backoff_in_manual_mode(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=1000)
        job = await q.add("j", attempts=3, backoff=Backoff("exponential", 2))
        got = await fetch(w, "t")
        await got.move_to_failed("x", "t")
        first = job.run_at
        await clock.advance_to(first or 0)
        got = await fetch(w, "t")
        await got.move_to_failed("x", "t")
        assert first is not None and job.run_at is not None
        assert job.run_at - first == pytest.approx(2 * (first - 0.0))
        assert job.state is JobState.DELAYED


async def test_unrecoverable_error_fails_for_good(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("m")
        w = rt.worker(q)
        job = await q.add("j", attempts=5, backoff=1)
        other = await q.add("k")
        got = await fetch(w, "t")
        nxt = await got.move_to_failed(UnrecoverableError("give up"), "t")
        assert nxt is not None and nxt.id == other.id
        assert job.state is JobState.FAILED
        assert job.failed_reason == "UnrecoverableError: give up"
        assert (job.attempts_started, job.attempts_made) == (1, 1)
        assert job.run_at is None


async def test_move_to_failed_rejects_a_non_error(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("m")
        w = rt.worker(q)
        await q.add("j")
        got = await fetch(w, "t")
        with pytest.raises(InvalidOptionError):
            await got.move_to_failed(42, "t")  # type: ignore[arg-type]
        assert got.state is JobState.ACTIVE


# ---------------------------------------------------------------- concurrent consumers


@pytest.mark.parametrize("fetch_next", [True, False])
async def test_concurrent_consumers_never_share_a_job(
    fetch_next: bool, make_runtime: MakeRuntime
) -> None:
    total = 600
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("m")
        w1, w2 = rt.worker(q), rt.worker(q)
        added = await q.add_bulk([{"name": "j", "data": i} for i in range(total)])
        held: dict[int, str] = {}
        completed: Counter[int] = Counter()
        by_token: Counter[str] = Counter()

        async def consume(worker: Worker, token: str) -> None:
            job = await worker.get_next_job(token)
            while job is not None:
                assert job.id not in held, f"job {job.id} held by {held.get(job.id)} and {token}"
                assert job.lock_token == token
                held[job.id] = token
                await anyio.lowlevel.checkpoint()  # let the others run while we hold it
                assert held[job.id] == token
                del held[job.id]
                completed[job.id] += 1
                by_token[token] += 1
                nxt = await job.move_to_completed(token, token, fetch_next=fetch_next)
                job = nxt if fetch_next else await worker.get_next_job(token)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for worker, token in [(w1, "a1"), (w1, "a2"), (w2, "b1"), (w2, "b2")]:
                    tg.start_soon(consume, worker, token)
        assert set(completed) == {j.id for j in added}
        assert set(completed.values()) == {1}
        assert sum(by_token.values()) == total
        assert len(by_token) == 4 and min(by_token.values()) > 0  # they did interleave
        assert (await q.counts())["completed"] == total
        for job in added:
            assert job.state is JobState.COMPLETED
            assert job.attempts_started == 1
            assert job.return_value in by_token


# ---------------------------------------------------------------- get_next_job timeout


async def test_get_next_job_without_timeout_returns_none_at_once() -> None:
    clock = VirtualClock()
    async with Runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q)
        delayed = await q.add("later", delay=5)
        with anyio.fail_after(5):
            assert await w.get_next_job("t") is None
            assert await w.get_next_job("t", timeout=0) is None
        assert clock.now() == 0.0
        assert delayed.state is JobState.DELAYED
        assert not rt._engine.fetchers  # nobody left waiting


async def test_get_next_job_with_timeout_returns_a_job_added_later(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        got: list[Job | None] = []
        added: list[Job] = []

        async def consumer() -> None:
            got.append(await w.get_next_job("t", timeout=30))

        async def producer() -> None:
            await clock.sleep(5)
            added.append(await q.add("j", {"x": 1}))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consumer)
                tg.start_soon(producer)
        [job] = got
        assert job is not None
        assert job.id == added[0].id
        assert job.data == {"x": 1}
        assert clock.now() == 5.0
        assert job.processed_at == 5.0
        assert job.lock_token == "t"
        assert job.lock_expires_at == 35.0


async def test_get_next_job_with_timeout_returns_none_after_the_timeout(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q)
        await clock.advance(100)
        with anyio.fail_after(5):
            assert await w.get_next_job("t", timeout=30) is None
        assert clock.now() == 130.0
        # The timed-out request is not served later: a new job stays waiting for the next.
        job = await q.add("j")
        await clock.run_until_idle()
        assert job.state is JobState.WAITING
        got = await fetch(w, "u")
        assert got.id == job.id and got.lock_token == "u"


async def test_get_next_job_with_timeout_gets_a_delayed_job_when_due(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q)
        await q.add("j", delay=12)
        with anyio.fail_after(5):
            job = await w.get_next_job("t", timeout=30)
        assert job is not None
        assert clock.now() == 12.0


async def test_get_next_job_job_added_at_the_deadline_is_not_lost(
    make_runtime: MakeRuntime,
) -> None:
    # A job that arrives at the very moment the wait times out is either returned or left
    # waiting: never locked under a token whose caller was told None.
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        got: list[Job | None] = []
        added: list[Job] = []

        async def consumer() -> None:
            got.append(await w.get_next_job("t", timeout=30))

        async def producer() -> None:
            await clock.sleep(30)
            added.append(await q.add("j"))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consumer)
                tg.start_soon(producer)
        job = added[0]
        if got[0] is None:
            assert job.state is JobState.WAITING, "caller got None but the job is locked"
        else:
            assert got[0].id == job.id and job.state is JobState.ACTIVE


async def test_get_next_job_argument_checks(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("m")
        w = rt.worker(q)
        for token in ("", None, 3):
            with pytest.raises(InvalidOptionError):
                await w.get_next_job(token)  # type: ignore[arg-type]
        with pytest.raises(InvalidOptionError):
            await w.get_next_job("t", timeout=-1)

        async def noop(job: Job) -> None:
            return None

        p = rt.worker(q, noop)
        with pytest.raises(InvalidOptionError, match="without a processor"):
            await p.get_next_job("t")


# ---------------------------------------------------------------- close


async def test_close_gives_held_jobs_back_to_waiting_without_a_stall() -> None:
    clock = VirtualClock(autojump=False)
    async with Runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        other = rt.worker(q, lock_duration=30)
        jobs = await q.add_bulk([{"name": "j", "data": i} for i in range(6)])
        mine = [await fetch(w, "a"), await fetch(w, "a"), await fetch(w, "b")]
        await mine[0].extend_lock("a", 500)
        theirs = await fetch(other, "c")
        async with rt.events() as events:
            await w.close()
            await w.close()  # idempotent
            seen = drain(events)
        assert w.manual
        for job in mine:
            assert job.state is JobState.WAITING
            assert job.lock_token is None and job.lock_expires_at is None
            assert job.stalled_counter == 0
            assert job.attempts_made == 0
        assert not [e for e in seen if isinstance(e, JobStalled)]
        assert sorted(e.job_id for e in seen if isinstance(e, JobWaiting)) == sorted(
            j.id for j in mine
        )
        assert all(e.previous is JobState.ACTIVE for e in seen if isinstance(e, JobWaiting))
        assert theirs.state is JobState.ACTIVE and theirs.lock_token == "c"  # not its job
        assert [lock[1] for lock in rt._core.locks] == [theirs.id]
        with pytest.raises(InvalidOptionError, match="closed"):
            await w.get_next_job("a")
        with pytest.raises(Exception, match="lock"):
            await mine[0].move_to_completed(None, "a")

        # Nothing is lost: another consumer finishes every job, and the released ones are
        # never counted as stalled even after their old lock times would have passed.
        await clock.advance(1000)
        assert theirs.state is JobState.WAITING and theirs.stalled_counter == 1
        nxt: Job | None = await fetch(other, "d")
        finished = 0
        while nxt is not None:
            nxt = await nxt.move_to_completed("ok", "d")
            finished += 1
        assert finished == 6
        assert all(j.state is JobState.COMPLETED for j in jobs)
        assert sum(j.stalled_counter for j in jobs) == 1  # only `theirs`


async def test_close_after_a_lock_expired_but_before_the_stalled_check(
    make_runtime: MakeRuntime,
) -> None:
    # A batch runs its commands before its timers, so `close()` can come while a lock is
    # past its expiry and not yet stalled. That job stalls, as its expiry says; the others
    # go back to waiting; and `close()` does not fail halfway.
    async with make_runtime() as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=0.05)
        await q.add_bulk([{"name": "j", "data": i} for i in range(3)])
        expiring = await fetch(w, "a")
        kept = await fetch(w, "a")
        await kept.extend_lock("a", 60)
        # Blocks the event loop on purpose: no timer can stall `expiring` before close.
        time.sleep(0.1)  # noqa: ASYNC251
        await w.close()
        assert expiring.state is JobState.WAITING and expiring.stalled_counter == 1
        assert kept.state is JobState.WAITING and kept.stalled_counter == 0
        assert (await q.counts())["waiting"] == 3


async def test_close_with_nothing_held_and_after_finishing(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("m")
        idle = rt.worker(q)
        await idle.close()
        w = rt.worker(q)
        await q.add("j")
        job = await fetch(w, "t")
        await job.move_to_completed(1, "t")
        await w.close()
        assert job.state is JobState.COMPLETED


async def test_close_ends_a_pending_get_next_job_and_hands_out_nothing(
    make_runtime: MakeRuntime,
) -> None:
    # "Take no new job": a consumer blocked in get_next_job(timeout=...) when its worker
    # closes must not be handed a job added afterwards (BullMQ: getNextJob returns nothing
    # once closing), and no job may end up locked under the closed worker's token.
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        results: list[Any] = []

        async def consumer() -> None:
            results.append(await w.get_next_job("t", timeout=60))

        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            await clock.run_until_idle()
            await w.close()
            job = await q.add("j")
            await clock.advance(61)
        assert results == [None]
        assert job.lock_token is None
        assert job.state is JobState.WAITING
        assert job.stalled_counter == 0
        assert job.attempts_started == 0


@pytest.mark.runtimes("local", "postgresql", why=CANCEL_TIMING)
async def test_a_fetch_cancelled_as_its_job_arrives_gives_the_job_back(
    anyio_backend_name: str, make_runtime: MakeRuntime
) -> None:
    # The consumer's wait is served and then cancelled before it resumes (asyncio's
    # `Task.cancel`, as `asyncio.wait_for` or a web framework does it): a job it will never
    # see must not stay locked by nobody until the lock expires (and then count as a stall).
    # trio cannot cancel a task it has already woken: there the consumer gets the job.
    async with make_runtime() as rt:
        q = rt.queue("m")
        w = rt.worker(q, lock_duration=30)
        got: list[Job | None] = []
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                scope = anyio.CancelScope()
                tasks: list[asyncio.Task[Any]] = []

                async def consumer() -> None:
                    if anyio_backend_name == "asyncio":
                        tasks.append(asyncio.current_task())  # type: ignore[arg-type]
                    with scope:
                        got.append(await w.get_next_job("t", timeout=30))

                tg.start_soon(consumer)
                for _ in range(10):
                    await anyio.lowlevel.checkpoint()  # the consumer now waits
                added = await q.add("j")
                if tasks:
                    tasks[0].cancel()  # before the consumer resumes with the job
                else:
                    scope.cancel()
        if got:
            held = got[0]
            assert anyio_backend_name == "trio", "asyncio's cancel came too late to test"
            assert held is not None and held.id == added.id and held.state is JobState.ACTIVE
            return
        again = await w.get_next_job("t2")
        assert again is not None and again.id == added.id, "the job stayed locked by nobody"
        assert again.stalled_counter == 0 and again.attempts_started == 2
