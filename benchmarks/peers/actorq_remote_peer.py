"""actorq through a runtime host: a host process (``actorq serve``, journal at
``fsync="always"``) and client processes on loopback (`benchmarks.remote`)."""

from __future__ import annotations

from typing import Any

import anyio

import actorq
from actorq import Job

from .. import remote
from .common import Env, Params, Sample, now, w1_sample, w2_rounds

MISSING = {"W3": "not measured through a client yet", "W4": "not measured through a client yet"}


def w1(p: Params, env: Env, clients: int) -> Sample:
    with remote.host(durable=True, scratch=env.tmpdir) as (address, proc):
        out = remote.w1(address, p.w1_jobs, clients, proc.pid)
    return w1_sample(
        p.w1_jobs, out["add_s"], out["process_s"], host_cpu_us_per_job=out["host_cpu_us_per_job"]
    )


def w2(p: Params, env: Env, clients: int) -> Sample:
    with remote.host(durable=True, scratch=env.tmpdir) as (address, _proc):
        return anyio.run(_w2, p, address)


async def _w2(p: Params, address: str) -> Sample:
    started = [0.0]

    async def process(job: Job[Any, Any]) -> None:
        started[0] = now()

    async with actorq.connect(f"actorq://{address}", token=remote.TOKEN) as rt:
        q = rt.queue("w2")
        rt.worker(q, process)

        async def one_job() -> None:
            await (await q.add("ping", None)).wait_until_finished()

        return await w2_rounds(p, started, one_job)
