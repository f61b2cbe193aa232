"""W1 under the issue-17 limits: the cost of a limiter that never binds, and of groups.

Run it: ``python -m benchmarks.limits`` (``--reps N``, ``--backend trio``; ``--order``: the
core alone, by layout of the jobs, see `ORDERS`). Three variants
of W1 (20,000 no-op jobs, one ``add_bulk``, then a worker at concurrency 50; end to end is
one clock from before the add to the last job's run), run alternately (plain, limiter,
groups, plain, ...) so a shared machine's load falls on each alike:

* **plain**: W1 as ``benchmarks.run`` measures it;
* **limiter**: the worker has ``limiter={"max": 10**9, "duration": 1}``: every take asks
  the window and counts its starts (and the queue record is journaled, here to no journal);
* **groups**: the jobs are spread over 1,000 groups (``group=f"g{i % 1000}"``, interleaved:
  no two neighbours of the ``add_bulk`` share their options): every take goes through the
  rotation, every start and end through the per-group counts;
* **groups, runs**: the same 1,000 groups, each group's 20 jobs side by side in the
  ``add_bulk`` (a tenant's batch): the same processing, an add whose neighbours share a spec.

Rates are jobs per second of this process's CPU time (`time.process_time`), not of the wall
clock: on a machine shared with other work the wall clock charges their load to whichever
variant it falls on. The goal: each variant within 1.2x of plain W1 in the same run (median
over reps), for end to end and processing.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from typing import Any

import anyio

from actorq import Job, Runtime
from actorq._core import CoreState
from actorq._options import bulk_specs

from .run import machine_line
from .workloads import W1_CONCURRENCY, W1_JOBS

GROUPS = 1_000
GOAL = 1.2
VARIANTS = ("plain", "limiter", "groups", "groups, runs")


async def w1(variant: str) -> dict[str, float]:
    if variant == "groups":
        specs: list[Any] = [
            {"name": "noop", "data": None, "group": f"g{i % GROUPS}"} for i in range(W1_JOBS)
        ]
    elif variant == "groups, runs":
        per = W1_JOBS // GROUPS
        specs = [{"name": "noop", "data": None, "group": f"g{i // per}"} for i in range(W1_JOBS)]
    else:
        specs = [{"name": "noop", "data": None} for _ in range(W1_JOBS)]
    options: dict[str, Any] = {}
    if variant == "limiter":
        options["limiter"] = {"max": 10**9, "duration": 1}
    done = anyio.Event()
    n = 0

    async def process(job: Job) -> None:
        nonlocal n
        n += 1
        if n == W1_JOBS:
            done.set()

    clock = time.process_time  # this process's CPU: what other processes take is left out
    async with Runtime() as rt:
        q = rt.queue("w1")
        t0 = clock()
        await q.add_bulk(specs)
        t1 = clock()
        rt.worker(q, process, concurrency=W1_CONCURRENCY, **options)
        await done.wait()
        t2 = clock()
        counts = await q.counts()
    if counts["completed"] != W1_JOBS:
        raise RuntimeError(f"W1 {variant}: expected {W1_JOBS} completed, got {counts}")
    return {"e2e_jobs_s": W1_JOBS / (t2 - t0), "process_jobs_s": W1_JOBS / (t2 - t1)}


#: ``--order``: take and complete on `CoreState` alone, the jobs in four layouts: in id order
#: (one priority), strided (priority ``-(i % 20)``: taken 20 ids apart, no groups), and the
#: two group layouts above. Strided against in order is what visiting the records out of id
#: order costs by itself.
ORDERS = ("in order", "strided", "groups", "groups, runs")


def core_order(layout: str) -> float:
    """CPU seconds to take and complete W1's jobs (50 a take) on a bare `CoreState`."""
    core = CoreState()
    items: list[dict[str, Any]]
    if layout == "in order":
        items = [{"name": "n", "priority": 0} for _ in range(W1_JOBS)]
    elif layout == "strided":
        items = [{"name": "n", "priority": -(i % 20)} for i in range(W1_JOBS)]
    elif layout == "groups":
        items = [{"name": "n", "group": f"g{i % GROUPS}"} for i in range(W1_JOBS)]
    else:
        items = [{"name": "n", "group": f"g{i // (W1_JOBS // GROUPS)}"} for i in range(W1_JOBS)]
    specs, names, datas = bulk_specs("q", items)
    core.add(specs, 0.0, names, datas)
    gc.collect()
    gc.disable()
    try:
        t0 = time.process_time()
        for _ in range(W1_JOBS // W1_CONCURRENCY):
            for rec in core.take("q", W1_CONCURRENCY, 0.0, "t"):
                core.complete(rec.id, None, None, 0.0)
        return time.process_time() - t0
    finally:
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument("--order", action="store_true", help="the core alone, by layout")
    args = parser.parse_args(argv)
    if args.order:
        times: dict[str, list[float]] = {layout: [] for layout in ORDERS}
        for _ in range(args.reps):
            for layout in ORDERS:
                times[layout].append(core_order(layout))
        base = min(times["in order"])
        print("| layout | take + complete, ms (best) | vs in order |")
        print("|---|--:|--:|")
        for layout in ORDERS:
            best = min(times[layout])
            print(f"| {layout} | {best * 1e3:.1f} | {best / base:.2f}x |")
        return 0
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for rep in range(args.reps):
        for variant in VARIANTS:
            gc.collect()
            samples[variant].append(anyio.run(w1, variant, backend=args.backend))
        print(f"  rep {rep + 1}/{args.reps}", file=sys.stderr, flush=True)
    print(machine_line(args.backend, args.reps, False))
    print()
    print("| W1 variant | e2e jobs/CPU s | process jobs/CPU s | e2e vs plain | process vs plain |")
    print("|---|--:|--:|--:|--:|")
    med = {
        v: {k: statistics.median(s[k] for s in samples[v]) for k in samples[v][0]} for v in VARIANTS
    }
    ok = True
    for variant in VARIANTS:
        e2e, proc = med[variant]["e2e_jobs_s"], med[variant]["process_jobs_s"]
        # Slowdown: plain's rate over this one's (1.00: as fast; 1.20: the goal's edge).
        r_e2e = med["plain"]["e2e_jobs_s"] / e2e
        r_proc = med["plain"]["process_jobs_s"] / proc
        ok &= r_e2e <= GOAL and r_proc <= GOAL
        print(f"| {variant} | {e2e:,.0f} | {proc:,.0f} | {r_e2e:.2f}x | {r_proc:.2f}x |")
    print()
    print(f"goal: every variant within {GOAL}x of plain: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
