"""A `VirtualClock` shared by a host and its client in one process sees through the link:
autojump waits for a frame in flight and for a job the client's processor runs, an explicit
advance waits for what is in flight, and a processor asleep on the clock in the client lets
time move, its lock renewed on the same clock (docs/testing.md)."""

from __future__ import annotations

import anyio
import pytest
from remote_fixture import remote_runtime

import actorq
from actorq import InvalidOptionError, Job, JobStalled, Runtime, VirtualClock


async def test_a_client_processor_asleep_on_the_shared_clock_lets_it_jump_exactly() -> None:
    clock = VirtualClock()
    starts: list[float] = []
    async with remote_runtime(clock=clock) as rt:
        q = rt.queue("q")

        async def process(job: Job[int, int]) -> int:
            starts.append(clock.now())
            await clock.sleep(3600)  # far past lock_duration: the lock is renewed meanwhile
            return job.data * 2

        rt.worker(q, process, lock_duration=30, concurrency=2)
        async with rt.events() as events:
            first = await q.add("a", 1, delay=100)
            second = await q.add("b", 2, delay=160)
            with anyio.fail_after(10):
                assert await first.wait_until_finished() == 2
                assert await second.wait_until_finished() == 4
            stalled = [e for e in events.drain_nowait() if isinstance(e, JobStalled)]
        assert starts == [100.0, 160.0]
        done = [await q.get_job(j.id) for j in (first, second)]
        assert [j.finished_at for j in done if j is not None] == [3700.0, 3760.0]
        assert [j.stalled_counter for j in done if j is not None] == [0, 0]
        assert stalled == []


async def test_autojump_waits_for_a_client_processor_awaiting_something_else() -> None:
    clock = VirtualClock()
    release = anyio.Event()
    async with remote_runtime(clock=clock) as rt:
        q = rt.queue("q")

        async def process(job: Job[None, float]) -> float:
            await release.wait()  # not the clock: time must stand still meanwhile
            return clock.now()

        rt.worker(q, process)
        job = await q.add("held")
        await q.add("later", delay=50)
        for _ in range(200):  # the job's frame, the processor, the clock all get turns
            await anyio.lowlevel.checkpoint()
        assert clock.now() == 0.0
        release.set()
        with anyio.fail_after(10):
            assert await job.wait_until_finished() == 0.0


async def test_an_explicit_advance_waits_for_the_clients_worker_and_its_report() -> None:
    clock = VirtualClock(autojump=False)
    async with remote_runtime(clock=clock) as rt:
        q = rt.queue("q")
        ran: list[float] = []

        async def process(job: Job[None, None]) -> None:
            ran.append(clock.now())

        rt.worker(q, process)
        jobs = [await q.add("j", delay=d) for d in (5, 10, 10)]
        # A job too big for one socket read: its frame takes many loop turns to arrive.
        big = await q.add("big", "x" * (8 << 20), delay=15)
        await clock.advance(20)  # nothing awaited but the advance itself
        assert ran == [5.0, 10.0, 10.0, 15.0]
        assert [(await q.get_job(j.id)).finished_at for j in [*jobs, big]] == [
            5.0,
            10.0,
            10.0,
            15.0,
        ]  # type: ignore[union-attr]


async def test_a_timed_call_through_the_client_times_out_on_the_shared_clock() -> None:
    clock = VirtualClock()
    async with remote_runtime(clock=clock) as rt:
        q = rt.queue("q")
        worker = rt.worker(q)  # manual
        with anyio.fail_after(10):
            assert await worker.get_next_job("t", timeout=600) is None
        assert clock.now() == 600.0


async def test_a_client_on_another_clock_shares_nothing_and_the_clock_moves_after_it() -> None:
    clock = VirtualClock(autojump=False)
    async with Runtime(listen="127.0.0.1:0", clock=clock) as host:
        url = f"actorq://{host.address}"
        async with actorq.connect(url, clock=VirtualClock(autojump=False)) as other:
            q = other.queue("q")

            async def process(job: Job[int, int]) -> int:
                return job.data + 1

            other.worker(q, process)
            job = await q.add("j", 1)
            with anyio.fail_after(10):
                assert await job.wait_until_finished() == 2
            assert clock._in_transit == 0  # neither end counts frames for the other clock
        async with actorq.connect(url, clock=clock) as client:
            await client.queue("q").add("x")
        assert clock._in_transit == 0  # what a closed link carried is not waited for
        with anyio.fail_after(10):
            await clock.advance(5)
        assert clock.now() == 5.0


def test_connect_refuses_a_clock_that_is_not_one() -> None:
    with pytest.raises(InvalidOptionError) as info:
        actorq.connect("actorq://127.0.0.1:1", clock="virtual")  # type: ignore[arg-type]
    assert info.value.field == "clock"
