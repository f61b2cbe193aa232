"""BullMQ's job control (issue 17): promote, change_delay, change_priority, pausing one
worker, obliterate and get_workers, each exact on a virtual clock and kept by a journal."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime, RuntimeLives

from actorq import (
    IllegalTransitionError,
    InvalidOptionError,
    Job,
    JobState,
    Runtime,
    VirtualClock,
)

#: Control is state: it must hold on every kind of runtime, PostgreSQL's journal included.
pytestmark = pytest.mark.runtimes("local", "remote", "postgresql")


class Recorder:
    """A processor that notes each job's name and the virtual time it ran."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.ran: list[tuple[str, float]] = []

    async def __call__(self, job: Job) -> None:
        self.ran.append((job.name, self.clock.now()))


# ---------------------------------------------------------------------- promote


async def test_promote_runs_a_delayed_job_now_and_only_a_delayed_one(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        seen = Recorder(clock)
        rt.worker(q, seen)
        later = await q.add("later", delay=100)
        await clock.advance(1)
        assert seen.ran == []
        await later.promote()
        await clock.advance(1)
        assert seen.ran == [("later", 1.0)]
        done = await q.get_job(later.id)
        assert done is not None and done.state is JobState.COMPLETED
        with pytest.raises(IllegalTransitionError, match="promote"):
            await later.promote()  # completed: nothing to promote


async def test_promote_jobs_promotes_every_delayed_job_soonest_first(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(autojump=False)
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        for name, delay in (("c", 30), ("a", 10), ("b", 20)):
            await q.add(name, delay=delay)
        await q.add("waiting")
        await q.pause()
        assert await q.promote_jobs() == 3
        counts = await q.counts()
        assert counts["delayed"] == 0 and counts["waiting"] == 4
        seen = Recorder(clock)
        rt.worker(q, seen)
        await q.resume()
        await clock.advance(1)
        assert [name for name, _ in seen.ran] == ["waiting", "a", "b", "c"]
        assert await q.promote_jobs() == 0


# ---------------------------------------------------------------------- change_delay


async def test_change_delay_moves_the_due_time_to_the_exact_second(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        seen = Recorder(clock)
        rt.worker(q, seen)
        sooner = await q.add("sooner", delay=100)
        later = await q.add("later", delay=10)
        await clock.advance(2)
        await sooner.change_delay(3)  # due at 2 + 3
        await later.change_delay(50)  # due at 52
        await clock.advance(100)
        assert seen.ran == [("sooner", 5.0), ("later", 52.0)]
        with pytest.raises(IllegalTransitionError, match="change_delay"):
            await sooner.change_delay(1)


async def test_change_delay_refuses_a_bad_delay_and_changes_nothing(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock(autojump=False)) as rt:
        q = rt.queue("q")
        job = await q.add("x", delay=10)
        for bad in (-1, float("nan"), "5", None):
            with pytest.raises(InvalidOptionError) as info:
                await job.change_delay(bad)  # type: ignore[arg-type]
            assert info.value.field == "delay"
        again = await q.get_job(job.id)
        assert again is not None and again.run_at == 10.0


# ---------------------------------------------------------------------- change_priority


async def test_change_priority_moves_a_waiting_job_in_line(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        await q.pause()
        _a, b, c = [await q.add(name) for name in "abc"]
        await c.change_priority(10)  # higher runs first
        await b.change_priority(0, lifo=True)  # the front of priority 0
        seen = Recorder(clock)
        rt.worker(q, seen)
        await q.resume()
        await clock.advance(1)
        assert [name for name, _ in seen.ran] == ["c", "b", "a"]
        done = await q.get_job(c.id)
        assert done is not None and done.priority == 10


async def test_change_priority_of_a_delayed_job_holds_when_it_comes_due(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        await q.pause()
        await q.add("first")
        late = await q.add("late", delay=5)
        await late.change_priority(7)
        await clock.advance(10)
        seen = Recorder(clock)
        rt.worker(q, seen)
        await q.resume()
        await clock.advance(1)
        assert [name for name, _ in seen.ran] == ["late", "first"]


async def test_change_priority_refuses_a_bad_priority_and_changes_nothing(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("q")
        job = await q.add("x", priority=3)
        for field, call in (
            ("priority", lambda: job.change_priority(2**40)),
            ("priority", lambda: job.change_priority("high")),  # type: ignore[arg-type]
            ("lifo", lambda: job.change_priority(1, lifo="yes")),  # type: ignore[arg-type]
        ):
            with pytest.raises(InvalidOptionError) as info:
                await call()
            assert info.value.field == field
        again = await q.get_job(job.id)
        assert again is not None and again.priority == 3


# ---------------------------------------------------------------------- one worker paused


async def test_a_paused_worker_finishes_its_job_and_takes_no_more_until_resumed(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    release = anyio.Event()
    ran: list[str] = []
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")

        async def gated(job: Job) -> None:
            ran.append(job.name)
            if job.name == "first":
                await release.wait()

        worker = rt.worker(q, gated)
        await q.add("first")
        await clock.advance(1)  # it started, and waits for `release`
        assert ran == ["first"]
        await worker.pause(wait=False)
        assert worker.paused
        await q.add("second")
        release.set()
        await clock.advance(10)
        assert ran == ["first"]  # the running one finished; the next one waits
        counts = await q.counts()
        assert counts["completed"] == 1 and counts["waiting"] == 1
        await worker.resume()
        await clock.advance(1)
        assert ran == ["first", "second"] and not worker.paused


async def test_pause_waits_for_running_jobs_and_other_workers_go_on(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        mine: list[float] = []
        theirs: list[str] = []

        async def slow(job: Job) -> None:
            await clock.sleep(30)
            mine.append(clock.now())

        async def other(job: Job) -> None:
            theirs.append(job.name)

        paused = rt.worker(q, slow)
        await q.add("slow")
        await clock.advance(1)
        rt.worker(q, other)
        await paused.pause()  # returns once its running job finished
        assert mine == [30.0]
        for n in range(3):
            await q.add(f"n{n}")
        await clock.advance(1)
        assert theirs == ["n0", "n1", "n2"] and mine == [30.0]


async def test_a_paused_manual_worker_hands_out_nothing(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("q")
        worker = rt.worker(q)
        await q.add("x")
        await worker.pause()
        assert await worker.get_next_job("t") is None
        await worker.resume()
        job = await worker.get_next_job("t")
        assert job is not None and job.name == "x"


# ---------------------------------------------------------------------- obliterate, workers


async def test_obliterate_removes_every_job_and_resumes_the_queue(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")

        async def work(job: Job) -> None:
            if job.name == "bad":
                raise ValueError("bad")

        rt.worker(q, work)
        await q.add("good")
        await q.add("bad")
        await clock.advance(1)
        await q.add("later", delay=100)
        await q.pause()
        await q.add("waiting")
        other = await rt.queue("other").add("kept")
        assert await q.obliterate() == 4
        assert set((await q.counts()).values()) == {0}
        assert await rt.queue("other").get_job(other.id) is not None
        await q.add("after")  # the queue is resumed: it runs
        await clock.advance(1)
        assert (await q.counts())["completed"] == 1


async def test_obliterate_refuses_while_a_job_is_active_unless_forced(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    outcome: list[str] = []
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")

        async def forever(job: Job) -> None:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                outcome.append("cancelled")
                raise

        rt.worker(q, forever)
        running = await q.add("running")
        await q.add("next")
        await clock.advance(1)
        with pytest.raises(IllegalTransitionError, match="force=True"):
            await q.obliterate()
        assert (await q.counts())["active"] == 1 and (await q.counts())["waiting"] == 1
        assert await q.obliterate(force=True) == 2
        await clock.advance(1)
        assert outcome == ["cancelled"]
        assert await q.get_job(running.id) is None
        assert set((await q.counts()).values()) == {0}


async def test_get_workers_lists_the_open_workers_of_the_queue(make_runtime: MakeRuntime) -> None:
    async def noop(job: Job) -> None:
        return None

    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("q")
        first = rt.worker(q, noop)
        manual = rt.worker(q)
        rt.worker("elsewhere", noop)
        assert q.get_workers() == [first, manual]
        await first.close()
        assert q.get_workers() == [manual]


# ---------------------------------------------------------------------- on a journal


async def test_control_changes_survive_a_restart(runtime_lives: RuntimeLives) -> None:
    clock = VirtualClock(autojump=False)
    async with runtime_lives(clock=clock) as life:
        async with life() as rt:
            q = rt.queue("q")
            await q.pause()
            a, b = await q.add("a"), await q.add("b")
            await b.change_priority(5)
            moved = await q.add("moved", delay=100)
            await moved.change_delay(7)
            promoted = await q.add("promoted", delay=100)
            await promoted.promote()
        async with life() as rt:  # on the same clock: the time goes on from the stop
            q = rt.queue("q")
            again = await q.get_job(moved.id)
            assert again is not None and again.run_at == 7.0
            seen = Recorder(clock)
            rt.worker(q, seen)
            await q.resume()
            await clock.advance(10)
            names: list[Any] = [name for name, _ in seen.ran]
            assert names == ["b", "a", "promoted", "moved"]
            assert seen.ran[-1] == ("moved", 7.0)
            assert a.id < b.id


# ---------------------------------------------------------------------- global concurrency


async def test_global_concurrency_caps_active_jobs_across_workers(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("q")
        await q.set_global_concurrency(3)
        assert await q.get_global_concurrency() == 3
        running = 0
        most = 0
        finished: list[float] = []

        async def work(job: Job) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await clock.sleep(10)
            running -= 1
            finished.append(clock.now())

        rt.worker(q, work, concurrency=5)
        rt.worker(q, work, concurrency=5)
        await q.add_bulk([{"name": "j"} for _ in range(9)])
        await clock.advance(100)
        assert most == 3
        assert finished == [10.0] * 3 + [20.0] * 3 + [30.0] * 3
        await q.remove_global_concurrency()
        assert await q.get_global_concurrency() is None
        await q.add_bulk([{"name": "j"} for _ in range(9)])
        await clock.advance(100)
        assert most == 9  # both workers' own concurrency is the only limit again


async def test_global_concurrency_holds_for_manual_fetches_and_bad_caps_are_refused(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("q")
        worker = rt.worker(q)
        await q.add_bulk([{"name": "j"} for _ in range(3)])
        for bad in (0, -1, "3", True, 2.5):
            with pytest.raises(InvalidOptionError) as info:
                await q.set_global_concurrency(bad)  # type: ignore[arg-type]
            assert info.value.field == "concurrency"
        assert await q.get_global_concurrency() is None
        await q.set_global_concurrency(1)
        first = await worker.get_next_job("t")
        assert first is not None
        assert await worker.get_next_job("t") is None  # one active: the cap
        second = await first.move_to_completed(None, "t", fetch_next=False)
        assert second is None
        assert await worker.get_next_job("t") is not None  # under the cap again


async def test_global_concurrency_survives_a_restart(runtime_lives: RuntimeLives) -> None:
    async with runtime_lives(clock=VirtualClock()) as life:
        async with life() as rt:
            await rt.queue("q").set_global_concurrency(2)
            await rt.queue("q").pause()
        async with life() as rt:
            assert await rt.queue("q").get_global_concurrency() == 2
            if isinstance(rt, Runtime):  # and from a snapshot (a client cannot ask for one)
                await rt.snapshot()
        async with life() as rt:
            q = rt.queue("q")
            assert await q.get_global_concurrency() == 2
            assert (await q.counts())["waiting"] == 0
            await q.remove_global_concurrency()
        async with life() as rt:
            assert await rt.queue("q").get_global_concurrency() is None
