"""The workloads: each function runs one repetition inside a fresh event loop.

Every workload returns a flat ``{metric: value}`` mapping; `benchmarks.run` repeats it and
reports the median and the min–max spread over the repetitions.
"""

from __future__ import annotations

import gc
import math
import random
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel

from actorq import Job, Runtime

Sample = dict[str, float]

W1_JOBS = 20_000
W1_CONCURRENCY = 50
W2_SAMPLES = 2_000
W2_WARMUP = 100
W3_JOBS = 5_000
W3_MAX_DELAY = 0.200
W3_SEED = 1234
FILLER_CHUNK = 50_000

FLOOR_NOWAIT_HOPS = 200_000
FLOOR_AWAITED_ROUND_TRIPS = 20_000
FLOOR_NOOP_CALLS = 200_000


def percentile(values: list[float], p: float) -> float:
    """The `p`-th percentile (0–100), nearest-rank on the sorted values."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


# ---------------------------------------------------------------------- floor


async def _noop() -> None:
    return None


async def floor() -> Sample:
    """The event loop's own unit costs, so per-job costs can be read as multiples."""
    n = FLOOR_NOWAIT_HOPS
    tx, rx = anyio.create_memory_object_stream[int](1)
    with tx, rx:
        send, receive = tx.send_nowait, rx.receive_nowait
        t0 = time.perf_counter()
        for i in range(n):
            send(i)
            receive()
        nowait = (time.perf_counter() - t0) / n

    trips = FLOOR_AWAITED_ROUND_TRIPS
    ping_tx, ping_rx = anyio.create_memory_object_stream[int](1)
    pong_tx, pong_rx = anyio.create_memory_object_stream[int](1)

    async def echo() -> None:
        async for item in ping_rx:
            await pong_tx.send(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(echo)
        await anyio.lowlevel.checkpoint()  # let the echo task park on receive()
        t0 = time.perf_counter()
        for i in range(trips):
            await ping_tx.send(i)
            await pong_rx.receive()
        awaited = (time.perf_counter() - t0) / (2 * trips)
        ping_tx.close()
    for stream in (ping_rx, pong_tx, pong_rx):
        stream.close()

    calls = FLOOR_NOOP_CALLS
    noop = _noop
    t0 = time.perf_counter()
    for _ in range(calls):
        await noop()
    coro = (time.perf_counter() - t0) / calls

    return {"nowait_us": nowait * 1e6, "awaited_us": awaited * 1e6, "noop_us": coro * 1e6}


# ---------------------------------------------------------------------- W1 and scaling


def _counting_processor(total: int, done: anyio.Event) -> Callable[[Job], Awaitable[None]]:
    """A no-op processor that sets `done` when it has run `total` jobs (no polling)."""
    n = 0

    async def process(job: Job) -> None:
        nonlocal n
        n += 1
        if n == total:
            done.set()

    return process


async def _process_timed(rt: Runtime, queue_name: str, total: int) -> float:
    """Start a worker and return the seconds until it has run `total` jobs."""
    done = anyio.Event()
    process = _counting_processor(total, done)
    t0 = time.perf_counter()
    rt.worker(rt.queue(queue_name), process, concurrency=W1_CONCURRENCY)
    await done.wait()
    return time.perf_counter() - t0


async def w1_throughput() -> Sample:
    """20,000 no-op jobs: one add_bulk, then a worker at concurrency 50; end to end is one
    clock from before the add to the last job's run."""
    specs = [{"name": "noop", "data": None} for _ in range(W1_JOBS)]
    async with Runtime() as rt:
        q = rt.queue("w1")
        t0 = time.perf_counter()
        await q.add_bulk(specs)
        add_s = time.perf_counter() - t0
        process_s = await _process_timed(rt, "w1", W1_JOBS)
        e2e_s = time.perf_counter() - t0
        counts = await q.counts()
    if counts["completed"] != W1_JOBS:
        raise RuntimeError(f"W1: expected {W1_JOBS} completed, got {counts}")
    return {
        "e2e_jobs_s": W1_JOBS / e2e_s,
        "add_jobs_s": W1_JOBS / add_s,
        "process_jobs_s": W1_JOBS / process_s,
        "process_us_per_job": process_s / W1_JOBS * 1e6,
    }


def _filler(n: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, n, FILLER_CHUNK):
        size = min(FILLER_CHUNK, n - start)
        yield [{"name": "filler", "data": None, "priority": -1} for _ in range(size)]


def scaling(waiting: int, *, measure_memory: bool) -> Callable[[], Awaitable[Sample]]:
    """W1's processing with `waiting` priority -1 jobs already waiting in the same queue."""

    async def run() -> Sample:
        out: Sample = {}
        async with Runtime() as rt:
            q = rt.queue("scaling")
            before = 0
            if measure_memory:
                gc.collect()
                tracemalloc.start()
                before = tracemalloc.get_traced_memory()[0]
            t0 = time.perf_counter()
            for chunk in _filler(waiting):
                await q.add_bulk(chunk)
            fill_s = time.perf_counter() - t0
            if measure_memory:
                # Two small round trips, so the scheduler drops its references to the last
                # add_bulk's batch (replies, change records) before the measurement.
                await q.counts()
                await q.counts()
                gc.collect()
                after = tracemalloc.get_traced_memory()[0]
                tracemalloc.stop()
                out["bytes_per_waiting_job"] = (after - before) / waiting
            else:
                out["filler_add_jobs_s"] = waiting / fill_s
            await q.add_bulk([{"name": "noop", "data": None} for _ in range(W1_JOBS)])
            gc.collect()
            process_s = await _process_timed(rt, "scaling", W1_JOBS)
            counts = await q.counts()
            # The 20,000 priority-0 jobs ran first; the filler is (almost) all still waiting.
            if counts["waiting"] < waiting - 4 * W1_CONCURRENCY:
                raise RuntimeError(f"scaling: filler did not stay waiting: {counts}")
            await q.pause()
        out["process_us_per_job"] = process_s / W1_JOBS * 1e6
        return out

    return run


# ---------------------------------------------------------------------- W2


async def w2_latency() -> Sample:
    """One job at a time: add→start and add→completed, after a warm-up."""
    started = [0.0]

    async def process(job: Job) -> None:
        started[0] = time.perf_counter()

    to_start: list[float] = []
    to_done: list[float] = []
    async with Runtime() as rt:
        q = rt.queue("w2")
        rt.worker(q, process, concurrency=1)
        for i in range(W2_WARMUP + W2_SAMPLES):
            t0 = time.perf_counter()
            job = await q.add("ping", None)
            await job.wait_until_finished()
            t1 = time.perf_counter()
            if i >= W2_WARMUP:
                to_start.append(started[0] - t0)
                to_done.append(t1 - t0)
    return {
        "start_p50_us": statistics.median(to_start) * 1e6,
        "start_p99_us": percentile(to_start, 99) * 1e6,
        "done_p50_us": statistics.median(to_done) * 1e6,
        "done_p99_us": percentile(to_done, 99) * 1e6,
    }


# ---------------------------------------------------------------------- W3


def w3_delayed(*, bulk: bool) -> Callable[[], Awaitable[Sample]]:
    """5,000 jobs due 0–200 ms ahead (seeded), concurrency 50: how late does each start?

    Lateness is the processor's first ``time.time()`` minus the job's due time, its
    ``run_at`` (``created_at + delay`` on the runtime's SystemClock). The runtime clears
    ``run_at`` when it promotes the job, so each job carries its delay in its data (JSON
    floats round-trip exactly), and the harness checks the identity on every job whose
    ``run_at`` is still readable after the add. The jobs are added one `add` at a time (each
    stamped when its own add commits), or with ``bulk`` in one `add_bulk`, whose jobs are all
    stamped at the start of the batch that records them.
    """

    async def run() -> Sample:
        rng = random.Random(W3_SEED)
        delays = [rng.uniform(0.0, W3_MAX_DELAY) for _ in range(W3_JOBS)]
        lateness: list[float] = []
        done = anyio.Event()

        async def process(job: Job) -> None:
            now = time.time()
            lateness.append(now - (job.created_at + job.data["delay"]))
            if len(lateness) == W3_JOBS:
                done.set()

        async with Runtime() as rt:
            q = rt.queue("w3")
            rt.worker(q, process, concurrency=W1_CONCURRENCY)
            if bulk:
                jobs = await q.add_bulk(
                    [{"name": "later", "data": {"delay": d}, "delay": d} for d in delays]
                )
            else:
                jobs = [await q.add("later", {"delay": d}, delay=d) for d in delays]
            for job, delay in zip(jobs, delays, strict=True):
                if job.run_at is not None and job.run_at != job.created_at + delay:
                    raise RuntimeError(f"W3: job {job.id}: run_at != created_at + delay")
            await done.wait()
        return {
            "late_p50_ms": statistics.median(lateness) * 1e3,
            "late_p99_ms": percentile(lateness, 99) * 1e3,
            "late_max_ms": max(lateness) * 1e3,
            "early": float(sum(1 for x in lateness if x < 0)),
        }

    return run
