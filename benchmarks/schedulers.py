"""Job scheduler ticks: the cost of one tick does not grow with the number of schedulers.

Run it: ``python -m benchmarks.schedulers`` (``--reps N``, ``--backend trio``,
``--ticks N``). For N = 100, 1,000 and 10,000 schedulers on one queue, each ``every=N``
seconds with ``start_at=i`` (so exactly one scheduler fires each second), a *tick* is one
scheduler's run: its delayed job promoted, taken (which adds the scheduler's next job,
through `add`, delayed to its next run time), and completed. Adding the schedulers is not
timed. Two measurements:

* **core**: the pure `CoreState` driven as the engine drives it (change records on,
  effects taken after each tick): the scheduler machinery alone;
* **runtime**: an in-memory `Runtime` on a `VirtualClock` with a no-op worker; the clock
  advances `ticks` virtual seconds (one step of the clock per tick, so this includes the
  clock's idle detection and the worker's round trip per tick).

The goal: the cost per tick at 10,000 schedulers within 1.5× of the cost at 100 (a tick
touches the timer index, a heap: O(log N), and one scheduler by key, never a scan).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time

import anyio

from actorq import Job, JobState, Runtime, VirtualClock
from actorq._core import CoreState
from actorq._core import commands as c
from actorq._schedule import scheduler_record

from .run import machine_line

SIZES = (100, 1_000, 10_000)
GOAL_RATIO = 1.5


async def _noop(job: Job) -> None:
    return None


async def one(n: int, ticks: int) -> tuple[float, int]:
    """(µs per tick, ticks run) for `n` schedulers."""
    clock = VirtualClock(start=0.0)
    async with Runtime(clock=clock) as rt:
        q = rt.queue("ticks")
        for i in range(n):
            await q.upsert_job_scheduler(f"s{i}", every=n, start_at=i + 1)
        rt.worker(q, _noop, concurrency=10)
        gc.collect()
        started = time.perf_counter()
        await clock.advance(ticks)
        elapsed = time.perf_counter() - started
        done = (await q.counts())["completed"]
        pending = (await q.counts())["delayed"]
        assert done == ticks, (done, ticks)
        assert pending == n, (pending, n)  # one pending job per scheduler, never two
    return elapsed / ticks * 1e6, done


def one_core(n: int, ticks: int) -> float:
    """µs per tick of the pure core for `n` schedulers."""
    core = CoreState()
    core.record_changes(True)
    for i in range(n):
        sched = scheduler_record(
            "ticks",
            f"s{i}",
            every=n,
            pattern=None,
            tz=None,
            start_at=i + 1,
            end_at=None,
            limit=None,
            immediately=False,
            template=None,
        )
        core.handle(c.UpsertScheduler(sched), 0.0)
    core.take_effects()
    gc.collect()
    done = 0
    started = time.perf_counter()
    for tick in range(1, ticks + 1):
        now = float(tick)
        core.run_timers(now)
        for rec in core.take("ticks", 10, now, "w1"):
            core.complete(rec.id, "w1", b"null", now)
            done += 1
        core.take_effects()
    elapsed = time.perf_counter() - started
    assert done == ticks, (done, ticks)
    assert core.counts("ticks")[JobState.DELAYED] == n  # one pending job per scheduler
    return elapsed / ticks * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--ticks", type=int, default=5_000)
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    args = parser.parse_args(argv)
    print(machine_line(args.backend, args.reps, quick=False))
    print(f"\n{args.ticks:,} ticks per run, {args.reps} runs of each size\n")
    print("| schedulers | core µs per tick: best | median | runtime µs per tick: best | median |")
    print("|--:|--:|--:|--:|--:|")
    core_runs: dict[int, list[float]] = {n: [] for n in SIZES}
    rt_runs: dict[int, list[float]] = {n: [] for n in SIZES}
    for _ in range(args.reps):  # sizes interleaved, so a busy spell hits them alike
        for n in SIZES:
            core_runs[n].append(one_core(n, args.ticks))
            rt_runs[n].append(anyio.run(one, n, args.ticks, backend=args.backend)[0])
    for n in SIZES:
        print(
            f"| {n:,} | {min(core_runs[n]):.1f} | {statistics.median(core_runs[n]):.1f} "
            f"| {min(rt_runs[n]):.1f} | {statistics.median(rt_runs[n]):.1f} |"
        )
    # The best of the repetitions: on a shared machine the noise only ever adds time.
    for label, runs in (("core", core_runs), ("runtime", rt_runs)):
        ratio = min(runs[SIZES[-1]]) / min(runs[SIZES[0]])
        verdict = "met" if ratio <= GOAL_RATIO else "MISSED"
        print(
            f"{label}: {SIZES[-1]:,} vs {SIZES[0]:,} schedulers {ratio:.2f}× "
            f"(best of {args.reps}; goal ≤ {GOAL_RATIO}×, {verdict})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
