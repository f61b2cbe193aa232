"""Lifecycle events a subscriber cannot miss, and how a runtime shuts down."""

from __future__ import annotations

import anyio
import pytest
from runtimes import RUNTIME_STOP, MakeRuntime

from actorq import (
    Event,
    Job,
    JobActive,
    JobAdded,
    JobCompleted,
    JobEvent,
    JobState,
    QueuePaused,
    QueueResumed,
    Runtime,
    RuntimeClosedError,
    VirtualClock,
)


async def test_events_for_one_job_come_in_lifecycle_order(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("ev")

        async def work(job: Job) -> dict[str, int]:
            return {"n": job.data * 2}

        rt.worker(q, work)
        async with rt.events() as events:
            job = await q.add("double", 21)
            mine: list[JobEvent] = []
            with anyio.fail_after(5):
                async for event in events:
                    if isinstance(event, JobEvent) and event.job_id == job.id:
                        mine.append(event)
                        if isinstance(event, JobCompleted):
                            break
        assert [type(e) for e in mine] == [JobAdded, JobActive, JobCompleted]
        added, active, completed = mine
        assert isinstance(added, JobAdded)
        assert added.state is JobState.WAITING
        assert (added.queue, added.name) == ("ev", "double")
        assert isinstance(active, JobActive)
        assert active.attempts_started == 1
        assert isinstance(completed, JobCompleted)
        assert completed.return_value == {"n": 42}


async def test_subscriber_misses_nothing_added_after_subscribing(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("ev")

        async def work(job: Job) -> int:
            return int(job.data)

        rt.worker(q, work, concurrency=4)
        n = 60
        async with rt.events() as events:
            jobs = [await q.add("j", i) for i in range(n // 2)]
            jobs += await q.add_bulk([{"name": "j", "data": i} for i in range(n // 2, n)])
            added: set[int] = set()
            active: set[int] = set()
            completed: dict[int, int] = {}
            with anyio.fail_after(5):
                async for event in events:
                    if isinstance(event, JobAdded):
                        added.add(event.job_id)
                    elif isinstance(event, JobActive):
                        assert event.job_id in added  # never active before added
                        active.add(event.job_id)
                    elif isinstance(event, JobCompleted):
                        assert event.job_id in active
                        completed[event.job_id] = event.return_value
                        if len(completed) == n:
                            break
        ids = {j.id for j in jobs}
        assert added == ids
        assert active == ids
        assert completed == {j.id: j.data for j in jobs}


async def test_two_subscribers_each_get_every_event(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("ev")
        async with rt.events() as first, rt.events() as second:
            await q.pause()
            job = await q.add("x")
            await q.resume()
            got: list[list[Event]] = []
            for stream in (first, second):
                seen: list[Event] = []
                with anyio.fail_after(5):
                    while len(seen) < 3:
                        seen.append(await stream.__anext__())
                got.append(seen)
        for seen in got:
            assert [type(e) for e in seen] == [QueuePaused, JobAdded, QueueResumed]
            added = seen[1]
            assert isinstance(added, JobAdded)
            assert added.job_id == job.id


async def test_closed_subscription_receives_no_more_events(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("ev")
        await q.pause()
        events = rt.events()
        await q.add("a")
        events.close()
        await q.add("b")  # publishing to a closed subscription must not break the runtime
        assert (await q.counts())["waiting"] == 2


# ---------------------------------------------------------------- shutdown


@pytest.mark.runtimes(
    "local",
    why=RUNTIME_STOP,
)
async def test_leaving_the_block_lets_a_running_job_finish(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    finished: list[float] = []
    async with make_runtime(clock=clock, shutdown_timeout=10) as rt:
        q = rt.queue("s")
        started = anyio.Event()

        async def slow(job: Job) -> str:
            started.set()
            await clock.sleep(5)
            finished.append(clock.now())
            return "done"

        rt.worker(q, slow)
        job = await q.add("slow")
        with anyio.fail_after(5):
            await started.wait()
    assert finished == [5.0]
    assert job.state is JobState.COMPLETED
    assert job.return_value == "done"


@pytest.mark.runtimes(
    "local",
    why=RUNTIME_STOP,
)
async def test_leaving_the_block_cancels_a_job_that_exceeds_shutdown_timeout(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    outcome: list[str] = []
    with anyio.fail_after(5):
        async with make_runtime(clock=clock, shutdown_timeout=10) as rt:
            q = rt.queue("s")
            started = anyio.Event()

            async def too_slow(job: Job) -> str:
                started.set()
                try:
                    await clock.sleep(1000)
                except anyio.get_cancelled_exc_class():
                    outcome.append(f"cancelled at {clock.now()}")
                    raise
                outcome.append("finished")
                return "late"

            rt.worker(q, too_slow)
            await q.add("slow")
            await started.wait()
    assert outcome == ["cancelled at 10.0"]


@pytest.mark.runtimes(
    "local",
    why=RUNTIME_STOP,
)
async def test_graceful_stop_waits_for_a_job_blocked_on_an_event(make_runtime: MakeRuntime) -> None:
    release = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as outer, make_runtime(shutdown_timeout=10) as rt:
            q = rt.queue("s")
            started = anyio.Event()

            async def gated(job: Job) -> str:
                started.set()
                await release.wait()
                return "finished"

            rt.worker(q, gated)
            job = await q.add("g")
            await started.wait()

            async def release_once_closing() -> None:
                await anyio.wait_all_tasks_blocked()
                release.set()

            outer.start_soon(release_once_closing)
    assert job.state is JobState.COMPLETED
    assert job.return_value == "finished"


@pytest.mark.runtimes(
    "local",
    why=RUNTIME_STOP,
)
async def test_shutdown_timeout_cancels_a_job_that_never_ends(make_runtime: MakeRuntime) -> None:
    outcome: list[str] = []
    with anyio.fail_after(5):
        async with make_runtime(shutdown_timeout=0.01) as rt:
            q = rt.queue("s")
            started = anyio.Event()

            async def forever(job: Job) -> None:
                started.set()
                try:
                    await anyio.Event().wait()
                except anyio.get_cancelled_exc_class():
                    outcome.append("cancelled")
                    raise

            rt.worker(q, forever)
            await q.add("f")
            await started.wait()
    assert outcome == ["cancelled"]


# Local: the Runtime's own stop (RUNTIME_STOP), with a task started in its task group.
async def test_leaving_the_block_does_not_start_waiting_jobs() -> None:
    clock = VirtualClock()
    ran: list[int] = []
    async with Runtime(clock=clock) as rt:
        q = rt.queue("s")
        started = anyio.Event()
        release = anyio.Event()

        async def first_holds(job: Job) -> None:
            ran.append(job.id)
            started.set()
            await release.wait()

        rt.worker(q, first_holds)
        first = await q.add("a")
        await q.add("b")
        with anyio.fail_after(5):
            await started.wait()

        async def release_later() -> None:
            await anyio.wait_all_tasks_blocked()
            release.set()

        rt._tg.start_soon(release_later)
    assert ran == [first.id]


@pytest.mark.runtimes(
    "local",
    why=RUNTIME_STOP,
)
async def test_close_from_a_processor_returns_and_stops_within_the_budget(
    make_runtime: MakeRuntime,
) -> None:
    # A processor that decides the service is done closes the runtime: the call returns at
    # once (waiting for its own job to finish would wait on itself), the processor's job
    # finishes, the waiting job never starts, and the block ends.
    clock = VirtualClock()
    closed_at: list[float] = []
    with anyio.fail_after(5):
        async with make_runtime(clock=clock, shutdown_timeout=30) as rt:
            q = rt.queue("s")

            async def stop_everything(job: Job) -> str:
                await rt.close()
                closed_at.append(clock.now())
                return "closed"

            rt.worker(q, stop_everything)
            first = await q.add("stop")
            second = await q.add("never", delay=1)
            await rt.wait_stopped()
            assert closed_at == [0.0]
            with pytest.raises(RuntimeClosedError):
                await q.add("late")
    assert first.state is JobState.COMPLETED and first.return_value == "closed"
    assert second.state is JobState.DELAYED


@pytest.mark.runtimes(
    "local",
    why=RUNTIME_STOP,
)
async def test_close_from_a_processor_that_keeps_running_ends_at_the_budget(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock()
    outcome: list[str] = []
    with anyio.fail_after(5):
        async with make_runtime(clock=clock, shutdown_timeout=10) as rt:
            q = rt.queue("s")

            async def close_then_linger(job: Job) -> None:
                await rt.close()
                try:
                    await clock.sleep(1000)
                except anyio.get_cancelled_exc_class():
                    outcome.append(f"cancelled at {clock.now()}")
                    raise

            rt.worker(q, close_then_linger)
            await q.add("linger")
            await rt.wait_stopped()
    assert outcome == ["cancelled at 10.0"]


@pytest.mark.runtimes(
    "local",
    why=RUNTIME_STOP,
)
async def test_close_from_another_task_waits_until_stopped(make_runtime: MakeRuntime) -> None:
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, make_runtime(clock=VirtualClock()) as rt:
            q = rt.queue("s")
            job = await q.add("x")
            done: list[bool] = []

            async def closer() -> None:
                await rt.close()
                done.append(True)

            tg.start_soon(closer)
            await rt.wait_stopped()
    assert done == [True]
    assert job.state is JobState.WAITING


async def test_calls_after_the_block_raise_runtime_closed(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("c")
        job = await q.add("x")

    async def proc(job: Job) -> None:
        return None

    with pytest.raises(RuntimeClosedError):
        await q.add("y")
    with pytest.raises(RuntimeClosedError):
        await q.counts()
    with pytest.raises(RuntimeClosedError):
        await q.get_jobs()
    with pytest.raises(RuntimeClosedError):
        await rt.counts()
    with pytest.raises(RuntimeClosedError):
        rt.worker(q, proc)
    with pytest.raises(RuntimeClosedError):
        rt.events()
    with pytest.raises(RuntimeClosedError):
        await job.wait_until_finished()
    with pytest.raises(RuntimeClosedError):
        await job.update_progress(1)
    with pytest.raises(RuntimeClosedError):
        async with rt:
            pass
    assert isinstance(RuntimeClosedError("x"), RuntimeError)


async def test_calls_before_the_block_raise_runtime_closed(make_runtime: MakeRuntime) -> None:
    rt = make_runtime()
    q = rt.queue("early")
    with pytest.raises(RuntimeClosedError):
        await q.add("x")


async def test_waiter_gets_runtime_closed_when_the_runtime_stops(make_runtime: MakeRuntime) -> None:
    errors: list[BaseException] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, make_runtime(clock=VirtualClock()) as rt:
            q = rt.queue("w")
            await q.pause()
            job = await q.add("never")

            async def wait() -> None:
                try:
                    await job.wait_until_finished()
                except RuntimeClosedError as exc:
                    errors.append(exc)

            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeClosedError)


async def test_exception_in_the_body_propagates_as_itself(make_runtime: MakeRuntime) -> None:
    class Boom(Exception):
        pass

    with anyio.fail_after(5), pytest.raises(Boom) as info:
        async with make_runtime(clock=VirtualClock()) as rt:
            q = rt.queue("b")
            started = anyio.Event()

            async def hang(job: Job) -> None:
                started.set()
                await anyio.Event().wait()

            rt.worker(q, hang)
            await q.add("h")
            await started.wait()
            raise Boom("from the body")
    assert type(info.value) is Boom
    assert str(info.value) == "from the body"


async def test_exception_in_the_body_of_an_idle_runtime_propagates(
    make_runtime: MakeRuntime,
) -> None:
    with pytest.raises(KeyError) as info:
        async with make_runtime():
            raise KeyError("k")
    assert type(info.value) is KeyError
