"""taskiq's InMemoryBroker: ``kiq()`` creates an asyncio task per message at once (no queue).

No delayed jobs (W3) and no flows (W4) in this broker.
"""

from __future__ import annotations

import asyncio
from typing import Any

from taskiq import InMemoryBroker, TaskiqMiddleware, TaskiqResult
from taskiq.message import TaskiqMessage

from .common import Counter, Env, Params, Sample, now, w1_sample, w2_rounds

MISSING = {
    "W3": (
        "not supported: InMemoryBroker has no delayed delivery; taskiq's "
        "`schedule_by_time` needs a schedule source and the separate `taskiq scheduler` "
        "process"
    ),
    "W4": "not supported: taskiq has no flows / parent-child fan-out",
}


class _Saved(TaskiqMiddleware):
    """Sets the current waiter's event once the result is saved (post_save hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.event: asyncio.Event | None = None

    def post_save(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        if self.event is not None:
            self.event.set()


async def w1(p: Params, env: Env, cfg: Any) -> Sample:
    broker = InMemoryBroker(max_async_tasks=p.concurrency)
    done = asyncio.Event()
    counter = Counter(p.w1_jobs, done)

    @broker.task(task_name="noop")
    async def noop() -> None:
        counter.hit()

    await broker.startup()
    try:
        t0 = now()
        for _ in range(p.w1_jobs):
            await noop.kiq()
        t1 = now()
        ran_during_enqueue = counter.n
        await done.wait()
        t2 = now()
    finally:
        await broker.shutdown()
    return w1_sample(p.w1_jobs, t1 - t0, t2 - t1, ran_during_enqueue=float(ran_during_enqueue))


async def w2(p: Params, env: Env, cfg: Any) -> Sample:
    saved = _Saved()
    broker = InMemoryBroker(max_async_tasks=1).with_middlewares(saved)
    started = [0.0]

    @broker.task(task_name="ping")
    async def ping() -> None:
        started[0] = now()

    await broker.startup()
    try:

        def _new_event() -> None:
            saved.event = asyncio.Event()

        async def one_job() -> None:
            await ping.kiq()
            event = saved.event
            assert event is not None  # set by _new_event before every round
            await event.wait()

        sample = await w2_rounds(p, started, one_job, _new_event)
    finally:
        await broker.shutdown()
    return sample
