"""Sandboxed processors: ``python -m benchmarks.sandbox``.

A CPU-bound processor (a pure-Python loop of about 20 ms) over 40 jobs, run three ways on the
same runtime: by one in-loop worker (the processor holds the event loop), and sandboxed in
1 and 2 child processes (``rt.worker(q, "benchmarks.sandbox:spin", processes=n)``). Beside
each, W2 add → start latency on the host, measured by a probe job every 10 ms on another
queue: it shows whether the host stays responsive while the CPU work runs. Options:
``--jobs N``, ``--work N`` (loop iterations per job).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import anyio

from actorq import Job, Runtime

WORK = 600_000


def spin(job: Job[Any, Any]) -> int:
    total = 0
    for i in range(job.data):
        total += i * i
    return total & 0xFF


async def spin_in_loop(job: Job[Any, Any]) -> int:
    return spin(job)  # on purpose: CPU work in the event loop, as the sandbox avoids


async def _probe(rt: Runtime, stop: anyio.Event, latencies: list[float]) -> None:
    started = [0.0]

    async def mark(job: Job[Any, Any]) -> None:
        started[0] = time.perf_counter()

    q = rt.queue("probe")
    rt.worker(q, mark)
    while not stop.is_set():
        t0 = time.perf_counter()
        await (await q.add("ping", None)).wait_until_finished()
        latencies.append((started[0] - t0) * 1e6)
        await anyio.sleep(0.01)


async def run(mode: str, jobs: int, work: int) -> tuple[float, float]:
    async with Runtime() as rt:
        q = rt.queue("cpu")
        if mode == "in-loop":
            rt.worker(q, spin_in_loop)
        elif mode != "idle":
            rt.worker(q, "benchmarks.sandbox:spin", processes=int(mode))
            # The children start (and import) before the clock starts.
            await (await q.add("warm", 1)).wait_until_finished(timeout=60)
        latencies: list[float] = []
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_probe, rt, stop, latencies)
            t0 = time.perf_counter()
            if mode == "idle":
                await anyio.sleep(1.0)
                rate = 0.0
            else:
                added = await q.add_bulk([{"name": "spin", "data": work} for _ in range(jobs)])
                for job in added:
                    await job.wait_until_finished(timeout=600)
                rate = jobs / (time.perf_counter() - t0)
            stop.set()
    return rate, statistics.median(latencies) if latencies else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--work", type=int, default=WORK)
    args = parser.parse_args()
    idle = anyio.run(run, "idle", args.jobs, args.work)[1]
    print(f"W2 on the host, idle: p50 {idle:.0f} µs")
    for mode in ("in-loop", "1", "2"):
        rate, p50 = anyio.run(run, mode, args.jobs, args.work)
        label = "one in-loop worker" if mode == "in-loop" else f"sandboxed, {mode} process(es)"
        print(f"{label}: {rate:.1f} jobs/s; W2 on the host meanwhile p50 {p50:.0f} µs")


if __name__ == "__main__":
    main()
