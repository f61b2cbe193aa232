"""BullMQ's Python package (Redis): `Queue`, `Worker`, `FlowProducer`.

Workers block on the queue's marker (BZPOPMIN), so pickup and delayed jobs are pushed, not
polled; the Python worker does not prefetch. Jobs are kept after completion
(``removeOnComplete`` default: keep). Completion: the worker's ``completed`` event, emitted
after ``moveToFinished`` has recorded the job as completed. Delays are integer ms; the due
time is the job's ``timestamp + delay``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from bullmq import FlowProducer, Queue, Worker

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
    w4_sample,
)


async def _flush(env: Env) -> None:
    client = aioredis.from_url(env.redis_url)
    await client.flushdb()
    await client.aclose()


def _opts(env: Env, **extra: Any) -> dict[str, Any]:
    return {"connection": env.redis_url, **extra}


async def w1(p: Params, env: Env, cfg: Any) -> Sample:
    await _flush(env)
    queue = Queue("w1", _opts(env))
    done = asyncio.Event()
    counter = Counter(p.w1_jobs, done)

    async def noop(job: Any, token: str) -> None:
        counter.hit()

    t0 = now()
    await queue.addBulk([{"name": "noop", "data": {}} for _ in range(p.w1_jobs)])
    t1 = now()
    worker = Worker("w1", noop, _opts(env, concurrency=p.concurrency))
    await done.wait()
    t2 = now()
    await worker.close()
    await queue.close()
    return w1_sample(p.w1_jobs, t1 - t0, t2 - t1)


async def w2(p: Params, env: Env, cfg: Any) -> Sample:
    await _flush(env)
    queue = Queue("w2", _opts(env))
    started = [0.0]
    finished = asyncio.Event()

    async def ping(job: Any, token: str) -> None:
        started[0] = now()

    worker = Worker("w2", ping, _opts(env, concurrency=1))
    worker.on("completed", lambda job, result: finished.set())

    async def one_job() -> None:
        await queue.add("ping", {})
        await finished.wait()

    sample = await w2_rounds(p, started, one_job, finished.clear)
    await worker.close()
    await queue.close()
    return sample


async def w3(p: Params, env: Env, cfg: Any) -> Sample:
    await _flush(env)
    queue = Queue("w3", _opts(env))
    ds = delays(p)
    lateness: list[float] = []
    done = asyncio.Event()

    async def later(job: Any, token: str) -> None:
        lateness.append(time.time() - (job.timestamp + job.delay) / 1000)
        if len(lateness) == len(ds):
            done.set()

    worker = Worker("w3", later, _opts(env, concurrency=p.concurrency))
    t0 = now()
    for d in ds:
        await queue.add("later", {}, {"delay": round(d * 1000)})
    enqueue_s = now() - t0
    await done.wait()
    await worker.close()
    await queue.close()
    return w3_sample(lateness, len(ds), enqueue_s)


async def w4(p: Params, env: Env, cfg: Any) -> Sample:
    await _flush(env)
    producer = FlowProducer(env.redis_url)
    done = asyncio.Event()
    counter = Counter(p.w4_parents, done)

    async def noop(job: Any, token: str) -> None:
        return None

    trees = [
        {"name": "parent", "queueName": "w4-parents", "data": {"n": i},
         "children": [{"name": "child", "queueName": "w4-children", "data": {}}
                      for _ in range(p.w4_children)]}
        for i in range(p.w4_parents)
    ]  # fmt: skip
    t0 = now()
    for tree in trees:
        await producer.add(tree)
    t1 = now()
    children = Worker("w4-children", noop, _opts(env, concurrency=p.concurrency))
    parents = Worker("w4-parents", noop, _opts(env, concurrency=p.concurrency))
    parents.on("completed", lambda job, result: counter.hit())
    await done.wait()
    t2 = now()
    await children.close()
    await parents.close()
    await producer.close()
    return w4_sample(p.w4_parents, p.w4_children, t1 - t0, t2 - t1)
