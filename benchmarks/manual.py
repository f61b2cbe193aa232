"""Manual-processing throughput: ``python -m benchmarks.manual [--reps N]``.

One consumer loops ``get_next_job`` → ``move_to_completed(None, token, fetch_next=True)``
over 20,000 jobs (in memory, asyncio, `SystemClock`), timed from the first fetch until the
fetch-next call returns None. Beside it, in the same run, W1: 20,000 no-op jobs added with
one ``add_bulk``, processed by a worker at concurrency 50 (timed from ``rt.worker(...)``
until the processor has run the 20,000th job). Each repetition is a fresh event loop and
runtime after a ``gc.collect()``; the figures are medians. Goal: manual within 1.5× of W1
(W1 jobs/s ÷ manual jobs/s ≤ 1.5).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence

import anyio

from actorq import Job, Runtime

JOBS = 20_000
W1_CONCURRENCY = 50
GOAL_RATIO = 1.5


async def manual_loop() -> float:
    """Seconds for one consumer to fetch and complete `JOBS` jobs with fetch-next."""
    async with Runtime() as rt:
        q = rt.queue("manual")
        w = rt.worker(q)
        await q.add_bulk([{"name": "noop", "data": None} for _ in range(JOBS)])
        done = 0
        t0 = time.perf_counter()
        job = await w.get_next_job("bench")
        while job is not None:
            job = await job.move_to_completed(None, "bench", fetch_next=True)
            done += 1
        elapsed = time.perf_counter() - t0
        counts = await q.counts()
    if done != JOBS or counts["completed"] != JOBS:
        raise RuntimeError(f"manual: expected {JOBS} completed, got {done} / {counts}")
    return elapsed


async def w1_processor() -> float:
    """Seconds for W1's processing phase (worker at concurrency 50, no-op processor)."""
    finished = 0
    all_done = anyio.Event()

    async def noop(job: Job) -> None:
        nonlocal finished
        finished += 1
        if finished == JOBS:
            all_done.set()

    async with Runtime() as rt:
        q = rt.queue("w1")
        await q.add_bulk([{"name": "noop", "data": None} for _ in range(JOBS)])
        t0 = time.perf_counter()
        rt.worker(q, noop, concurrency=W1_CONCURRENCY)
        await all_done.wait()
        elapsed = time.perf_counter() - t0
        counts = await q.counts()
    if counts["completed"] != JOBS:
        raise RuntimeError(f"W1: expected {JOBS} completed, got {counts}")
    return elapsed


def _repeat(workload: Callable[[], Awaitable[float]], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        gc.collect()
        out.append(anyio.run(workload, backend="asyncio"))
    return out


def main(argv: Sequence[str] | None = None) -> float:
    """Run both workloads, print jobs/s and the ratio; return the ratio (W1 ÷ manual)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    args = parser.parse_args(argv)
    reps = max(1, args.reps)
    manual = [JOBS / s for s in _repeat(manual_loop, reps)]
    w1 = [JOBS / s for s in _repeat(w1_processor, reps)]
    manual_med, w1_med = statistics.median(manual), statistics.median(w1)
    ratio = w1_med / manual_med
    print(f"{JOBS:,} jobs, asyncio, SystemClock, in memory, {reps} reps (median, min-max)")
    print(
        f"manual get_next_job -> move_to_completed(fetch_next=True): {manual_med:,.0f} jobs/s "
        f"({min(manual):,.0f}-{max(manual):,.0f}), {1e6 / manual_med:.1f} us/job"
    )
    print(
        f"W1 processor (add_bulk, concurrency {W1_CONCURRENCY}): {w1_med:,.0f} jobs/s "
        f"({min(w1):,.0f}-{max(w1):,.0f}), {1e6 / w1_med:.1f} us/job"
    )
    verdict = "PASS" if ratio <= GOAL_RATIO else "MISS"
    print(f"ratio W1/manual: {ratio:.2f}x (goal <= {GOAL_RATIO}x): {verdict}")
    return ratio


if __name__ == "__main__":
    main()
