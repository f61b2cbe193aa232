"""W4 flows: 200 parents × 20 children added with `FlowProducer`, no-op processors.

Run it: ``python -m benchmarks.flows`` (``--reps N``, ``--backend trio``). Prints a small
Markdown table of medians and min–max spreads over the repetitions, each in a fresh event
loop and a fresh in-memory `Runtime`.

Two shapes:

* **W4**: all 200 flows are added first (one ``FlowProducer.add`` per parent, 21 jobs each;
  add flows/s), then a worker at concurrency 50 starts on each queue; the clock runs from
  starting the workers until every parent is *completed* (``wait_until_finished`` on all
  200, registered as the workers start). Child jobs/s = 4,000 ÷ that wall time. Goal:
  ≥ 50,000 child jobs/s.
* **W4 live**: the workers run first and the flows are added while they work, so adds,
  children and parents interleave; timed from the first add to the last parent completed.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import anyio

from actorq import FlowJob, FlowProducer, Job, Runtime

from .run import fmt, machine_line, spread

Sample = dict[str, float]

W4_PARENTS = 200
W4_CHILDREN = 20
W4_CONCURRENCY = 50
GOAL_CHILD_JOBS_S = 50_000.0
PARENTS, CHILDREN = "w4-parents", "w4-children"


async def _noop(job: Job) -> None:
    return None


def _trees() -> list[FlowJob]:
    return [
        FlowJob(
            "parent",
            PARENTS,
            {"n": i},
            children=[FlowJob("child", CHILDREN, None) for _ in range(W4_CHILDREN)],
        )
        for i in range(W4_PARENTS)
    ]


def _start_workers(rt: Runtime) -> None:
    rt.worker(CHILDREN, _noop, concurrency=W4_CONCURRENCY)
    rt.worker(PARENTS, _noop, concurrency=W4_CONCURRENCY)


async def _wait_all(parents: list[Job]) -> None:
    async with anyio.create_task_group() as tg:
        for job in parents:
            tg.start_soon(job.wait_until_finished)


async def _check(rt: Runtime) -> None:
    parents = await rt.queue(PARENTS).counts()
    children = await rt.queue(CHILDREN).counts()
    if parents["completed"] != W4_PARENTS or children["completed"] != W4_PARENTS * W4_CHILDREN:
        raise RuntimeError(f"W4: not all completed: parents {parents}, children {children}")


async def w4() -> Sample:
    """Add every flow, then process: wall time until every parent completed."""
    trees = _trees()
    async with Runtime() as rt:
        producer = FlowProducer(rt)
        t0 = time.perf_counter()
        parents = [(await producer.add(tree)).job for tree in trees]
        add_s = time.perf_counter() - t0
        gc.collect()
        t1 = time.perf_counter()
        _start_workers(rt)
        await _wait_all(parents)
        process_s = time.perf_counter() - t1
        await _check(rt)
    children = W4_PARENTS * W4_CHILDREN
    return {
        "add_flows_s": W4_PARENTS / add_s,
        "add_jobs_s": W4_PARENTS * (W4_CHILDREN + 1) / add_s,
        "wall_ms": process_s * 1e3,
        "child_jobs_s": children / process_s,
        "all_jobs_s": (children + W4_PARENTS) / process_s,
    }


async def w4_live() -> Sample:
    """Workers first, flows added while they run: first add to last parent completed."""
    trees = _trees()
    async with Runtime() as rt:
        _start_workers(rt)
        producer = FlowProducer(rt)
        t0 = time.perf_counter()
        parents = [(await producer.add(tree)).job for tree in trees]
        await _wait_all(parents)
        total_s = time.perf_counter() - t0
        await _check(rt)
    return {
        "wall_ms": total_s * 1e3,
        "child_jobs_s": W4_PARENTS * W4_CHILDREN / total_s,
    }


def repeat(
    label: str, fn: Callable[[], Awaitable[Sample]], reps: int, backend: str
) -> list[Sample]:
    out: list[Sample] = []
    for i in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        out.append(anyio.run(fn, backend=backend))
        elapsed = time.perf_counter() - t0
        print(f"  {label}: rep {i + 1}/{reps} in {elapsed:.2f} s", file=sys.stderr, flush=True)
    return out


ROWS: list[tuple[str, str, str, str]] = [
    # (workload, key, metric label, unit)
    ("W4", "wall_ms", "wall time, workers start → every parent completed", "ms"),
    ("W4", "child_jobs_s", "child jobs processed", "jobs/s"),
    ("W4", "all_jobs_s", "all jobs processed (children + parents)", "jobs/s"),
    ("W4", "add_flows_s", "FlowProducer.add (21 jobs a flow)", "flows/s"),
    ("W4", "add_jobs_s", "jobs added through FlowProducer.add", "jobs/s"),
    ("W4 live", "wall_ms", "wall time, first add → every parent completed", "ms"),
    ("W4 live", "child_jobs_s", "child jobs, adds and processing interleaved", "jobs/s"),
]


def render(machine: str, samples: dict[str, list[Sample]]) -> tuple[str, bool]:
    lines = [
        machine,
        "",
        f"W4: {W4_PARENTS} parents × {W4_CHILDREN} children via FlowProducer, in memory, "
        f"workers at concurrency {W4_CONCURRENCY} on both queues, no-op processors.",
        "",
        "| Workload | Metric | Median | Spread | Unit | Goal |",
        "|---|---|---:|---:|---|---|",
    ]
    ok = True
    for workload, key, label, unit in ROWS:
        values = [s[key] for s in samples[workload]]
        median = statistics.median(values)
        goal = ""
        if workload == "W4" and key == "child_jobs_s":
            passed = median >= GOAL_CHILD_JOBS_S
            ok = ok and passed
            goal = f"≥ {fmt(GOAL_CHILD_JOBS_S)}: {'PASS' if passed else 'MISS'}"
        lines.append(
            f"| {workload} | {label} | {fmt(median)} | {spread(values)} | {unit} | {goal} |"
        )
    return "\n".join(lines), ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flows", description=__doc__)
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args(argv)
    reps = max(1, args.reps)
    samples = {
        "W4": repeat("W4", w4, reps, args.backend),
        "W4 live": repeat("W4 live", w4_live, reps, args.backend),
    }
    table, _ok = render(machine_line(args.backend, reps, quick=False), samples)
    print(table)
    return 0  # a MISS is a finding, not a crash (as benchmarks.run)


if __name__ == "__main__":
    raise SystemExit(main())
