"""A subscription holds at most its capacity of unread events: past that the oldest are
dropped and the reader's next event is a `Lagged` notice of how many, then the rest in
order. Driven by hand, as the engine publishes, without a runtime."""

from __future__ import annotations

import anyio
import pytest

from actorq import JobState, Lagged
from actorq._actors.changelog import NullChangeLog
from actorq._actors.engine import Engine
from actorq._actors.subscription import EventStream
from actorq._core import CoreState
from actorq._core import events as ev


def added(job_id: int) -> ev.JobAdded:
    return ev.JobAdded(job_id, "q", "j", JobState.WAITING)


def subscribe(capacity: int) -> tuple[Engine, EventStream]:
    engine = Engine(CoreState(), NullChangeLog(), lambda: 0.0)
    return engine, EventStream(engine, capacity)


async def test_a_subscriber_within_its_capacity_gets_every_event() -> None:
    _engine, stream = subscribe(3)
    stream.publish([added(1), added(2)])
    stream.publish([added(3)])
    assert stream.drain_nowait() == [added(1), added(2), added(3)]
    with pytest.raises(anyio.WouldBlock):
        stream.receive_nowait()


async def test_an_overflow_drops_the_oldest_and_says_how_many() -> None:
    _engine, stream = subscribe(3)
    for job_id in range(1, 6):
        stream.publish([added(job_id)])
    assert len(stream) == 3
    assert stream.receive_nowait() == Lagged(2)
    assert [stream.receive_nowait() for _ in range(3)] == [added(3), added(4), added(5)]


async def test_a_batch_larger_than_the_capacity_keeps_its_newest() -> None:
    _engine, stream = subscribe(2)
    stream.publish([added(1)])
    stream.publish([added(i) for i in range(2, 7)])
    assert stream.drain_nowait() == [Lagged(4), added(5), added(6)]


async def test_each_lag_is_told_once_with_what_was_lost_since_the_last_read() -> None:
    _engine, stream = subscribe(1)
    stream.publish([added(1), added(2), added(3)])
    assert stream.receive_nowait() == Lagged(2)
    assert stream.receive_nowait() == added(3)
    stream.publish([added(4)])
    assert stream.receive_nowait() == added(4)  # kept up: no notice
    stream.publish([added(5), added(6)])
    assert stream.drain_nowait() == [Lagged(1), added(6)]


async def test_a_waiting_reader_wakes_for_a_batch_and_ends_with_the_stream() -> None:
    _engine, stream = subscribe(10)
    got: list[ev.Event] = []

    async def read() -> None:
        async for event in stream:
            got.append(event)

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        stream.publish([added(1), added(2)])
        await anyio.wait_all_tasks_blocked()
        assert got == [added(1), added(2)]
        stream.publish([added(3)])
        stream.end()
    assert got == [added(1), added(2), added(3)]


async def test_a_closed_subscription_is_unsubscribed_and_holds_nothing() -> None:
    engine, stream = subscribe(2)
    other = EventStream(engine, 2)
    assert engine.subscribers == [stream, other]
    stream.publish([added(1), added(2), added(3)])
    stream.close()
    assert engine.subscribers == [other]
    stream.publish([added(4)])
    assert len(stream) == 0
    with pytest.raises(anyio.EndOfStream):
        stream.receive_nowait()
