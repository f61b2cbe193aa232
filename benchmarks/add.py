"""The add path against the process path: ``python -m benchmarks.add [--reps N] [--quick]``.

In one run, each repetition on fresh runtimes (20,000 jobs each, as W1):

* ``add_bulk`` of plain jobs (``{"name", "data": None}``), then a worker at concurrency 50
  processing them: the add rate, the process rate, and W1 end to end (the clock started
  before the add, stopped when the last job completed);
* ``add_bulk`` of jobs with options (``priority``, ``delay``, ``tags``, ``attempts``; the
  delay puts them in the delayed index, as a delay does);
* 20,000 sequential ``add`` calls (one job each, no options);
* plain ``add_bulk`` with a journal at ``fsync="always"`` and ``"interval"``.

Printed per figure: the median rate and the min–max spread, the cost per job, and the ratio
of an add's cost per job to a processed job's (the process rate of the same repetitions).
The goal the issue set: that ratio <= 1.5 for plain ``add_bulk``.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from actorq import Job, Runtime

JOBS = 20_000
CONCURRENCY = 50
RATIO_GOAL = 1.5

Sample = dict[str, float]


def _plain() -> list[dict[str, Any]]:
    return [{"name": "noop", "data": None} for _ in range(JOBS)]


def _with_options() -> list[dict[str, Any]]:
    return [
        {
            "name": "noop",
            "data": {"i": i},
            "priority": 5,
            "delay": 60.0,
            "tags": ["bench", "add"],
            "attempts": 3,
        }
        for i in range(JOBS)
    ]


async def _process(rt: Runtime, queue: str) -> float:
    """Seconds from starting a worker to its `JOBS`-th job done."""
    done = anyio.Event()
    finished = 0

    async def noop(job: Job) -> None:
        nonlocal finished
        finished += 1
        if finished == JOBS:
            done.set()

    t0 = time.perf_counter()
    rt.worker(rt.queue(queue), noop, concurrency=CONCURRENCY)
    await done.wait()
    return time.perf_counter() - t0


async def plain_w1() -> Sample:
    """Plain add_bulk, then processing: add, process and end-to-end seconds."""
    specs = _plain()
    async with Runtime() as rt:
        q = rt.queue("w1")
        t0 = time.perf_counter()
        await q.add_bulk(specs)
        add_s = time.perf_counter() - t0
        process_s = await _process(rt, "w1")
        e2e_s = time.perf_counter() - t0
        counts = await q.counts()
    if counts["completed"] != JOBS:
        raise RuntimeError(f"expected {JOBS} completed, got {counts}")
    return {"add_bulk": add_s, "process": process_s, "e2e": e2e_s}


async def options_bulk() -> Sample:
    specs = _with_options()
    async with Runtime() as rt:
        q = rt.queue("opts")
        t0 = time.perf_counter()
        await q.add_bulk(specs)
        add_s = time.perf_counter() - t0
        counts = await q.counts()
    if counts["delayed"] != JOBS:
        raise RuntimeError(f"expected {JOBS} delayed, got {counts}")
    return {"add_bulk_options": add_s}


async def sequential() -> Sample:
    async with Runtime() as rt:
        q = rt.queue("seq")
        add = q.add
        t0 = time.perf_counter()
        for _ in range(JOBS):
            await add("noop", None)
        add_s = time.perf_counter() - t0
    return {"add_each": add_s}


def journaled(fsync: str) -> Callable[[], Awaitable[Sample]]:
    async def run() -> Sample:
        specs = _plain()
        folder = tempfile.mkdtemp(prefix="actorq-bench-add-")
        try:
            async with Runtime(path=folder, fsync=fsync) as rt:
                q = rt.queue("journal")
                t0 = time.perf_counter()
                await q.add_bulk(specs)
                add_s = time.perf_counter() - t0
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return {f"add_bulk_{fsync}": add_s}

    return run


FIGURES: tuple[tuple[str, str], ...] = (
    ("add_bulk", "add_bulk, 20,000 plain jobs"),
    ("add_bulk_options", "add_bulk, 20,000 jobs with priority, delay, tags, attempts"),
    ("add_each", "20,000 sequential add calls"),
    ("add_bulk_always", 'add_bulk, 20,000 plain jobs, journal fsync="always"'),
    ("add_bulk_interval", 'add_bulk, 20,000 plain jobs, journal fsync="interval"'),
    ("process", "process 20,000, concurrency 50"),
    ("e2e", "W1 end to end: add_bulk + process, one clock"),
)


def collect(reps: int, backend: str) -> dict[str, list[float]]:
    """Seconds per figure, `reps` of each, the workloads interleaved rep by rep."""
    runs: list[Callable[[], Awaitable[Sample]]] = [
        plain_w1,
        options_bulk,
        sequential,
        journaled("always"),
        journaled("interval"),
    ]
    out: dict[str, list[float]] = {}
    for i in range(reps):
        for fn in runs:
            gc.collect()
            for key, value in anyio.run(fn, backend=backend).items():
                out.setdefault(key, []).append(value)
        print(f"  rep {i + 1}/{reps} done", file=sys.stderr, flush=True)
    return out


def render(seconds: dict[str, list[float]]) -> tuple[str, bool]:
    process_us = statistics.median(seconds["process"]) / JOBS * 1e6
    lines = [
        f"{'figure':62} {'jobs/s (median)':>15} {'spread':>19} {'µs/job':>7} {'÷ process':>9}",
    ]
    ok = True
    for key, label in FIGURES:
        rates = [JOBS / s for s in seconds[key]]
        us = statistics.median(seconds[key]) / JOBS * 1e6
        ratio = us / process_us
        mark = ""
        if key == "add_bulk":
            ok = ratio <= RATIO_GOAL
            mark = f"  goal ≤ {RATIO_GOAL}: {'met' if ok else 'NOT met'}"
        spread = f"{min(rates):,.0f}–{max(rates):,.0f}"
        lines.append(
            f"{label:62} {statistics.median(rates):>15,.0f} {spread:>19} {us:>7.2f} "
            f"{ratio:>8.2f}×{mark}"
        )
    return "\n".join(lines), ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 reps")
    parser.add_argument("--backend", default="asyncio")
    args = parser.parse_args(argv)
    reps = 3 if args.quick else args.reps
    table, ok = render(collect(reps, args.backend))
    print(f"benchmarks.add · {reps} reps · the ratio is µs per added job ÷ µs per processed job")
    print(table)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
