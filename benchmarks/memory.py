"""Memory slopes: ``python -m benchmarks.memory [--jobs N]``.

What a runtime holds must not grow with what went through it (docs/guarantees.md, Memory).
Three measurements, each in a fresh in-memory `Runtime`, with tracemalloc's current traced
size read after two small round trips (so the scheduler has dropped its last batch) and a
``gc.collect()``:

* **completed jobs**: ``--jobs`` no-op jobs (1,000,000 by default) with
  ``remove_on_complete=True`` go through one worker at concurrency 50, added in `add_bulk`s
  of 10,000, each chunk processed before the next is added. The traced size is read after
  every chunk; the slope (least squares, the first chunk left out as warm-up) is the growth
  per 1,000 jobs. Goal: under 5 KB.
* **timed-out waiters**: ``--waiters`` calls (10,000 by default) of
  ``wait_until_finished(timeout=1)`` on a job that never runs, then as many of
  ``get_next_job(timeout=1)`` on an empty queue, on a `VirtualClock` (the timeouts are
  exact and take no real time). Growth per call after a warm-up of 100. Goal: under 1 byte
  (anything kept per call would cost tens of bytes).
* **an unread subscriber**: ``rt.events()`` (its default buffer) is opened and never read
  while ``--subscriber-jobs`` jobs (200,000 by default, at least 100,000 events past its
  buffer) run as in the first measurement. What the subscriber holds at the end, its events
  held and the `Lagged` count it would read first, and the slope once its buffer is full.
  Goal: bounded (slope under 5 KB per 1,000 jobs, as for the jobs themselves).

Tracing slows the runtime several times: a full run takes a few minutes here, ``--jobs
100000`` well under one. The figures go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from collections.abc import Sequence
from typing import Any

import anyio

from actorq import Job, Lagged, Queue, Runtime, VirtualClock

from .run import machine_line

CHUNK = 10_000
FULL_JOBS = 1_000_000
CONCURRENCY = 50
WARM_UP_WAITS = 100
#: Goals, in bytes: per 1,000 completed jobs, per timed-out waiter. Anything a wait left
#: behind would cost tens of bytes per call; under one byte is the allocator's own noise.
COMPLETED_GOAL = 5_000
WAITER_GOAL = 1


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def traced(q: Queue) -> int:
    """The current traced size, once the scheduler let go of the last batch."""
    await q.counts()
    await q.counts()
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def slope(points: Sequence[tuple[int, int]]) -> float:
    """Least-squares growth in bytes per unit of x."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


class Counter:
    """A processor that counts its jobs and wakes whoever waits for the count to reach a
    target: a chunk's end is seen without a waiter per job."""

    def __init__(self) -> None:
        self.done = 0
        self.target = 0
        self.reached = anyio.Event()

    async def __call__(self, job: Job) -> None:
        self.done += 1
        if self.done == self.target:
            self.reached.set()

    async def run(self, q: Queue, n: int) -> None:
        self.target = self.done + n
        self.reached = anyio.Event()
        await q.add_bulk([{"name": "j", "remove_on_complete": True}] * n)
        await self.reached.wait()


async def run_jobs(rt: Runtime, jobs: int, label: str) -> list[tuple[int, int]]:
    """Run `jobs` jobs removed on completion in chunks; (jobs done, traced bytes) after each."""
    q = rt.queue("memory")
    counter = Counter()
    rt.worker(q, counter, concurrency=CONCURRENCY)
    points = []
    while counter.done < jobs:
        await counter.run(q, min(CHUNK, jobs - counter.done))
        points.append((counter.done, await traced(q)))
        if len(points) % 10 == 0:
            log(f"  {label}: {counter.done:,} jobs, {points[-1][1] / 1e6:.2f} MB traced")
    counts = await q.counts()
    assert counts["completed"] == 0 and counts["waiting"] == 0, counts
    return points


async def completed_jobs(jobs: int) -> dict[str, Any]:
    async with Runtime() as rt:
        points = await run_jobs(rt, jobs, "completed")
    fitted = points[1:] if len(points) > 2 else points
    return {
        "jobs": jobs,
        "per_1000_b": slope(fitted) * 1000 if len(fitted) > 1 else float("nan"),
        "growth_b": points[-1][1] - points[0][1],
    }


async def timed_out_waiters(waiters: int) -> dict[str, Any]:
    out: dict[str, Any] = {"waiters": waiters}
    async with Runtime(clock=VirtualClock()) as rt:
        q = rt.queue("memory")
        await q.pause()
        job = await q.add("never")
        worker = rt.worker("empty")

        async def wait_for_job() -> None:
            try:
                await job.wait_until_finished(timeout=1)
            except TimeoutError:
                return
            raise AssertionError("the job was never meant to finish")

        async def fetch_nothing() -> None:
            assert await worker.get_next_job("t", timeout=1) is None

        for name, call in (("wait_until_finished", wait_for_job), ("get_next_job", fetch_nothing)):
            for _ in range(WARM_UP_WAITS):
                await call()
            before = await traced(q)
            for _ in range(waiters):
                await call()
            out[f"{name}_b"] = (await traced(q) - before) / waiters
            log(f"  waiters: {waiters:,} {name} timed out")
    return out


async def unread_subscriber(jobs: int) -> dict[str, Any]:
    async with Runtime() as rt:
        q = rt.queue("memory")
        before = await traced(q)
        events = rt.events()
        points = await run_jobs(rt, jobs, "subscriber")
        held = points[-1][1] - before
        full = [(x, y) for x, y in points if x * 3 > 2 * events.capacity]  # buffer full
        fitted = full[1:] if len(full) > 2 else full
        out = {
            "jobs": jobs,
            "capacity": events.capacity,
            "events_held": len(events),
            "held_b": held,
            "per_1000_b": slope(fitted) * 1000 if len(fitted) > 1 else float("nan"),
        }
        first = events.receive_nowait()
        out["lagged"] = first.dropped if isinstance(first, Lagged) else 0
        events.close()
    return out


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


async def main(args: argparse.Namespace) -> None:
    print(machine_line(args.backend, 1, args.jobs < FULL_JOBS))
    tracemalloc.start()
    try:
        log(f"completed jobs: {args.jobs:,}")
        done = await completed_jobs(args.jobs)
        log(f"timed-out waiters: {args.waiters:,} of each kind")
        waits = await timed_out_waiters(args.waiters)
        log(f"unread subscriber: {args.subscriber_jobs:,} jobs")
        sub = await unread_subscriber(args.subscriber_jobs)
    finally:
        tracemalloc.stop()
    per_job = done["per_1000_b"]
    print(
        f"completed jobs (remove_on_complete=True), {done['jobs']:,} jobs: "
        f"{per_job:+,.0f} B per 1,000 jobs (traced growth over the run "
        f"{done['growth_b']:+,} B); goal < {COMPLETED_GOAL:,} B: "
        f"{verdict(per_job < COMPLETED_GOAL)}"
    )
    for name in ("wait_until_finished", "get_next_job"):
        per_wait = waits[f"{name}_b"]
        print(
            f"timed-out {name}(timeout=1), {waits['waiters']:,} calls: "
            f"{per_wait:+,.1f} B per call; goal < {WAITER_GOAL} B: "
            f"{verdict(per_wait < WAITER_GOAL)}"
        )
    bounded = sub["events_held"] <= sub["capacity"] and sub["per_1000_b"] < COMPLETED_GOAL
    print(
        f"unread subscriber (buffer {sub['capacity']:,}), {sub['jobs']:,} jobs: holds "
        f"{sub['held_b'] / 1e6:,.2f} MB ({sub['events_held']:,} events, Lagged "
        f"{sub['lagged']:,} first); {sub['per_1000_b']:+,.0f} B per 1,000 jobs once full; "
        f"goal bounded: {verdict(bounded)}"
    )


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=FULL_JOBS, help="completed jobs to run")
    parser.add_argument("--waiters", type=int, default=10_000, help="timed-out calls of each")
    parser.add_argument(
        "--subscriber-jobs", type=int, default=200_000, help="jobs run past an unread subscriber"
    )
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    anyio.run(main, arguments, backend=arguments.backend)
