"""saq (Redis): a `Worker` run in-process (``worker.start()`` as a task).

Workers block on the queue list (BLMOVE), so pickup is pushed, not polled. Delayed jobs
(``scheduled=`` epoch seconds) are moved to the queue by the worker's ``schedule`` timer
(every 1 s by default, behind a 1 s Redis lock: saq's design, left as is). Results are kept
in the job hash (saq's default ``ttl``, 600 s). Completion: the ``after_process`` hook,
which saq runs after ``job.finish`` has recorded the result. No flows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from saq import Queue, Worker

from .common import (
    Counter,
    Env,
    Params,
    Sample,
    delays,
    now,
    w1_sample,
    w2_rounds,
    w3_sample,
)

MISSING = {
    "W4": "not supported: saq has no flows / parent-child jobs",
}


async def _queue(env: Env) -> Any:
    queue = Queue.from_url(env.redis_url)
    await queue.connect()
    await queue.redis.flushdb()
    return queue


@contextlib.asynccontextmanager
async def _worker(queue: Any, functions: list[Any], concurrency: int,
                  **kwargs: Any) -> AsyncIterator[Worker]:  # fmt: skip
    worker = Worker(queue, functions=functions, concurrency=concurrency, **kwargs)
    task = asyncio.create_task(worker.start())
    try:
        yield worker
    finally:
        await worker.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def w1(p: Params, env: Env, cfg: Any) -> Sample:
    queue = await _queue(env)
    done = asyncio.Event()
    counter = Counter(p.w1_jobs, done)

    async def noop(ctx: Any) -> None:
        counter.hit()

    t0 = now()
    for _ in range(p.w1_jobs):
        await queue.enqueue("noop")
    t1 = now()
    async with _worker(queue, [("noop", noop)], p.concurrency):
        await done.wait()
        t2 = now()
    await queue.disconnect()
    return w1_sample(p.w1_jobs, t1 - t0, t2 - t1)


async def w2(p: Params, env: Env, cfg: Any) -> Sample:
    queue = await _queue(env)
    started = [0.0]
    finished = asyncio.Event()

    async def ping(ctx: Any) -> None:
        started[0] = now()

    async def after_process(ctx: Any) -> None:
        finished.set()

    async with _worker(queue, [("ping", ping)], 1, after_process=after_process):

        async def one_job() -> None:
            await queue.enqueue("ping")
            await finished.wait()

        sample = await w2_rounds(p, started, one_job, finished.clear)
    await queue.disconnect()
    return sample


async def w3(p: Params, env: Env, cfg: Any) -> Sample:
    queue = await _queue(env)
    ds = delays(p)
    lateness: list[float] = []
    done = asyncio.Event()

    async def later(ctx: Any, due: float) -> None:
        lateness.append(time.time() - due)
        if len(lateness) == len(ds):
            done.set()

    async with _worker(queue, [("later", later)], p.concurrency):
        t0 = now()
        for d in ds:
            due = time.time() + d
            await queue.enqueue("later", due=due, scheduled=due)
        enqueue_s = now() - t0
        await done.wait()
    await queue.disconnect()
    return w3_sample(lateness, len(ds), enqueue_s)
