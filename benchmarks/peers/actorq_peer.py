"""actorq itself, in memory, with ``Runtime(path=tmpdir, fsync="always")``, or on the
journal in PostgreSQL (``Runtime(env.pg_dsn)``, fsync="always", the tables dropped first)."""

from __future__ import annotations

import tempfile
import time

import anyio

from actorq import FlowJob, FlowProducer, Job, Runtime

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


def _runtime(env: Env, durable: bool | str) -> Runtime:
    if durable == "postgresql":
        import psycopg  # noqa: PLC0415 - only for this variant

        with psycopg.connect(env.pg_dsn, autocommit=True) as conn:
            conn.execute(
                "DROP TABLE IF EXISTS actorq_log, actorq_snapshot, actorq_lease, actorq_schema"
            )
        return Runtime(env.pg_dsn, fsync="always")
    if not durable:
        return Runtime()
    return Runtime(path=tempfile.mkdtemp(prefix="actorq-", dir=env.tmpdir), fsync="always")


async def w1(p: Params, env: Env, durable: bool | str) -> Sample:
    done = anyio.Event()
    counter = Counter(p.w1_jobs, done)

    async def process(job: Job) -> None:
        counter.hit()

    async with _runtime(env, durable) as rt:
        q = rt.queue("w1")
        t0 = now()
        await q.add_bulk([{"name": "noop", "data": None} for _ in range(p.w1_jobs)])
        t1 = now()
        rt.worker(q, process, concurrency=p.concurrency)
        await done.wait()
        t2 = now()
    return w1_sample(p.w1_jobs, t1 - t0, t2 - t1)


async def w2(p: Params, env: Env, durable: bool | str) -> Sample:
    started = [0.0]

    async def process(job: Job) -> None:
        started[0] = now()

    async with _runtime(env, durable) as rt:
        q = rt.queue("w2")
        rt.worker(q, process, concurrency=1)

        async def one_job() -> None:
            job = await q.add("ping", None)
            await job.wait_until_finished()

        return await w2_rounds(p, started, one_job)


async def w3(p: Params, env: Env, durable: bool | str) -> Sample:
    ds = delays(p)
    lateness: list[float] = []
    done = anyio.Event()

    async def process(job: Job) -> None:
        lateness.append(time.time() - (job.created_at + job.data["delay"]))
        if len(lateness) == len(ds):
            done.set()

    async with _runtime(env, durable) as rt:
        q = rt.queue("w3")
        rt.worker(q, process, concurrency=p.concurrency)
        t0 = now()
        for d in ds:
            await q.add("later", {"delay": d}, delay=d)
        enqueue_s = now() - t0
        await done.wait()
    return w3_sample(lateness, len(ds), enqueue_s)


async def w4(p: Params, env: Env, durable: bool | str) -> Sample:
    async def noop(job: Job) -> None:
        return None

    trees = [
        FlowJob("parent", "w4-parents", {"n": i},
                children=[FlowJob("child", "w4-children", None) for _ in range(p.w4_children)])
        for i in range(p.w4_parents)
    ]  # fmt: skip
    async with _runtime(env, durable) as rt:
        producer = FlowProducer(rt)
        t0 = now()
        parents = [(await producer.add(tree)).job for tree in trees]
        t1 = now()
        rt.worker("w4-children", noop, concurrency=p.concurrency)
        rt.worker("w4-parents", noop, concurrency=p.concurrency)
        async with anyio.create_task_group() as tg:
            for job in parents:
                tg.start_soon(job.wait_until_finished)
        t2 = now()
    return w4_sample(p.w4_parents, p.w4_children, t1 - t0, t2 - t1)
