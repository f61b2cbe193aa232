"""procrastinate (PostgreSQL, server defaults: fsync on, synchronous_commit on).

A worker run in-process (``app.run_worker_async`` as a task). Workers LISTEN for new jobs
(push); jobs deferred with ``schedule_at`` are not notified and are picked up by polling,
every ``fetch_job_polling_interval`` (default 5 s, set to 10 ms here). Jobs are kept after
completion (``delete_jobs`` default: never). Completion: procrastinate has no completion
hook or result store; the harness wraps the worker's ``JobManager.finish_job`` (the UPDATE
that records the job as succeeded) and signals when it returns. No flows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from procrastinate import App, PsycopgConnector

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
    "W4": "not supported: procrastinate has no flows / parent-child jobs",
}

POLL = 0.010
_schema_ready: set[str] = set()


async def _app(env: Env) -> App:
    async with await psycopg.AsyncConnection.connect(env.pg_dsn, autocommit=True) as conn:
        if env.pg_dsn not in _schema_ready:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        else:
            await conn.execute("TRUNCATE procrastinate_jobs CASCADE")
    return App(connector=PsycopgConnector(conninfo=env.pg_dsn))


@contextlib.asynccontextmanager
async def _open(env: Env, app: App) -> AsyncIterator[App]:
    async with app.open_async():
        if env.pg_dsn not in _schema_ready:
            await app.schema_manager.apply_schema_async()
            _schema_ready.add(env.pg_dsn)
        yield app


@contextlib.asynccontextmanager
async def _worker(app: App, concurrency: int) -> AsyncIterator[None]:
    task = asyncio.create_task(
        app.run_worker_async(
            concurrency=concurrency,
            fetch_job_polling_interval=POLL,
            install_signal_handlers=False,
        )
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def w1(p: Params, env: Env, cfg: Any) -> Sample:
    app = await _app(env)
    done = asyncio.Event()
    counter = Counter(p.w1_jobs, done)

    @app.task(name="noop")
    async def noop() -> None:
        counter.hit()

    async with _open(env, app):
        t0 = now()
        await noop.batch_defer_async(*({} for _ in range(p.w1_jobs)))
        t1 = now()
        async with _worker(app, p.concurrency):
            await done.wait()
            t2 = now()
    return w1_sample(p.w1_jobs, t1 - t0, t2 - t1)


async def w2(p: Params, env: Env, cfg: Any) -> Sample:
    app = await _app(env)
    started = [0.0]
    finished = asyncio.Event()

    @app.task(name="ping")
    async def ping() -> None:
        started[0] = now()

    manager = app.job_manager
    finish_job = manager.finish_job

    async def finish_and_signal(*args: Any, **kwargs: Any) -> Any:
        out = await finish_job(*args, **kwargs)
        finished.set()
        return out

    manager.finish_job = finish_and_signal  # type: ignore[method-assign]
    async with _open(env, app), _worker(app, 1):

        async def one_job() -> None:
            await ping.defer_async()
            await finished.wait()

        return await w2_rounds(p, started, one_job, finished.clear)


async def w3(p: Params, env: Env, cfg: Any) -> Sample:
    app = await _app(env)
    ds = delays(p)
    lateness: list[float] = []
    done = asyncio.Event()

    @app.task(name="later")
    async def later(due: float) -> None:
        lateness.append(time.time() - due)
        if len(lateness) == len(ds):
            done.set()

    async with _open(env, app), _worker(app, p.concurrency):
        t0 = now()
        for d in ds:
            when = datetime.fromtimestamp(time.time() + d, UTC)
            await later.configure(schedule_at=when).defer_async(due=when.timestamp())
        enqueue_s = now() - t0
        await done.wait()
    return w3_sample(lateness, len(ds), enqueue_s)
