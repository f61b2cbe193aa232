"""arq (Redis): a `Worker` run in-process (``worker.main()`` as a task, no signal handlers).

arq has no push notification: the worker polls the queue's sorted set every ``poll_delay``
(default 0.5 s, set to 1 ms here) and takes up to ``max_jobs`` jobs at a time. Results are
kept (``keep_result`` default, 1 h). Completion: the ``after_job_end`` hook, which arq runs
after the job's result is recorded. No flows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from arq import Worker, create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import func

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
    "W4": "not supported: arq has no flows / parent-child jobs",
}

POLL_DELAY = 0.001


async def _pool(env: Env) -> ArqRedis:
    pool = await create_pool(RedisSettings.from_dsn(env.redis_url))
    await pool.flushdb()
    return pool


@contextlib.asynccontextmanager
async def _worker(pool: ArqRedis, functions: list[Any], max_jobs: int,
                  **kwargs: Any) -> AsyncIterator[Worker]:  # fmt: skip
    worker = Worker(functions=functions, redis_pool=pool, max_jobs=max_jobs,
                    poll_delay=POLL_DELAY, handle_signals=False, **kwargs)  # fmt: skip
    task = asyncio.create_task(worker.main())
    try:
        yield worker
        if worker.tasks:  # let the last jobs record their results before closing the pool
            await asyncio.wait(list(worker.tasks.values()), timeout=5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(asyncio.CancelledError):  # close() cancels running jobs
            await worker.close()


async def w1(p: Params, env: Env, cfg: Any) -> Sample:
    pool = await _pool(env)
    done = asyncio.Event()
    counter = Counter(p.w1_jobs, done)

    async def noop(ctx: Any) -> None:
        counter.hit()

    t0 = now()
    for _ in range(p.w1_jobs):
        await pool.enqueue_job("noop")
    t1 = now()
    async with _worker(pool, [func(noop, name="noop")], p.concurrency):
        await done.wait()
        t2 = now()
    await pool.aclose()
    return w1_sample(p.w1_jobs, t1 - t0, t2 - t1)


async def w2(p: Params, env: Env, cfg: Any) -> Sample:
    pool = await _pool(env)
    started = [0.0]
    finished = asyncio.Event()

    async def ping(ctx: Any) -> None:
        started[0] = now()

    async def after_job_end(ctx: Any) -> None:
        finished.set()

    async with _worker(pool, [func(ping, name="ping")], 1, after_job_end=after_job_end):

        async def one_job() -> None:
            await pool.enqueue_job("ping")
            await finished.wait()

        sample = await w2_rounds(p, started, one_job, finished.clear)
    await pool.aclose()
    return sample


async def w3(p: Params, env: Env, cfg: Any) -> Sample:
    pool = await _pool(env)
    ds = delays(p)
    lateness: list[float] = []
    done = asyncio.Event()

    async def later(ctx: Any, due: float) -> None:
        lateness.append(time.time() - due)
        if len(lateness) == len(ds):
            done.set()

    async with _worker(pool, [func(later, name="later")], p.concurrency):
        t0 = now()
        for d in ds:
            due_ms = round((time.time() + d) * 1000)  # arq stores the due time in ms
            when = datetime.fromtimestamp(due_ms / 1000, UTC)
            await pool.enqueue_job("later", due_ms / 1000, _defer_until=when)
        enqueue_s = now() - t0
        await done.wait()
    await pool.aclose()
    return w3_sample(lateness, len(ds), enqueue_s)
