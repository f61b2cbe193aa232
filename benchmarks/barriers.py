"""Tag-barrier and dependency-chain costs in the pure core: ``python -m benchmarks.barriers``.

Everything runs on `actorq._core.CoreState` directly (no runtime, no event loop, no journal,
events and change records off), so the figures are the core's own bookkeeping.

* **barrier overhead**: 100,000 jobs, each with 3 tags drawn from 1,000, are added and then
  started and finished one by one (``take(q, 1)`` + ``complete``). Measured once with 10,000
  distinct 2-tag barrier sets registered (each waited on by a job that stays `blocked`: it
  also waits on a gate job that never finishes) and once with none. Reported: µs per job for
  the add and for take + complete, and the ratio (goal: < 2x).
* **chain release**: a chain of 100,000 jobs (each depends on the previous one) is run from
  the head: take + complete of each job releases the next. Reported: jobs released per
  second over the whole chain.
* **bulk barrier add**: one ``add_bulk`` of 1,000 / 2,000 / 4,000 jobs each waiting on its
  own barrier, against the same number of plain jobs (no goal; shows how the add-time
  deadlock check grows with the batch).

Each figure is the median of ``--reps`` repetitions (3 by default; ``--quick`` runs 1 with
10x fewer jobs), each on a fresh core after a ``gc.collect()``.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence

from actorq._core import CoreState, JobSpec, JobState

QUEUE = "work"
TOKEN = "bench"
VOCABULARY = 1_000
JOB_TAGS = 3
BARRIER_TAGS = 2
GOAL_RATIO = 2.0


def _spec(**kw: object) -> JobSpec:
    return JobSpec(name="job", queue=QUEUE, data=b"null", **kw)  # type: ignore[arg-type]


def _tag(i: int) -> str:
    return f"t{i}"


def _barrier_sets(n: int, rng: random.Random) -> list[tuple[str, ...]]:
    seen: set[frozenset[str]] = set()
    out: list[tuple[str, ...]] = []
    while len(out) < n:
        picked = frozenset(_tag(t) for t in rng.sample(range(VOCABULARY), BARRIER_TAGS))
        if picked not in seen:
            seen.add(picked)
            out.append(tuple(sorted(picked)))
    return out


def _job_tags(n: int, rng: random.Random) -> list[tuple[str, ...]]:
    return [tuple(_tag(t) for t in rng.sample(range(VOCABULARY), JOB_TAGS)) for _ in range(n)]


def _barrier_round(jobs: int, barriers: int, seed: int) -> tuple[float, float, int]:
    """(µs per add, µs per take + complete, barriers registered) for one fresh core."""
    rng = random.Random(seed)
    core = CoreState(seed=seed)
    if barriers:
        gate = core.add([JobSpec(name="gate", queue="gates", data=b"null", delay=1e12)], 0.0)
        gate_id = gate[0][0].id
        waiters = [
            _spec(depends_on_job_ids=(gate_id,), depends_on_tags=tags)
            for tags in _barrier_sets(barriers, rng)
        ]
        for start in range(0, len(waiters), 1_000):
            core.add(waiters[start : start + 1_000], 0.0)
    registered = len(core.blocking.barrier_waiters)
    specs = [_spec(tags=tags) for tags in _job_tags(jobs, rng)]
    gc.collect()
    t0 = time.perf_counter()
    for spec in specs:
        core.add([spec], 0.0)
    t1 = time.perf_counter()
    take, complete = core.take, core.complete
    done = 0
    while True:
        got = take(QUEUE, 1, 1.0, TOKEN)
        if not got:
            break
        complete(got[0].id, TOKEN, None, 1.0)
        done += 1
    t2 = time.perf_counter()
    if done != jobs:
        raise RuntimeError(f"barrier round: ran {done} of {jobs} jobs")
    still = core.counts(QUEUE)[JobState.BLOCKED]
    if still != barriers:
        raise RuntimeError(f"barrier round: {still} waiters left blocked, expected {barriers}")
    return (t1 - t0) / jobs * 1e6, (t2 - t1) / jobs * 1e6, registered


def _chain_round(length: int) -> tuple[float, float]:
    """(seconds to add the chain, jobs released per second while running it)."""
    core = CoreState(seed=1)
    gc.collect()
    t0 = time.perf_counter()
    prev = core.add([_spec()], 0.0)[0][0].id
    for _ in range(length - 1):
        prev = core.add([_spec(depends_on_job_ids=(prev,))], 0.0)[0][0].id
    t1 = time.perf_counter()
    if core.counts(QUEUE)[JobState.BLOCKED] != length - 1:
        raise RuntimeError("chain: every job but the head should start blocked")
    take, complete = core.take, core.complete
    released = 0
    while True:
        got = take(QUEUE, 1, 1.0, TOKEN)
        if not got:
            break
        complete(got[0].id, TOKEN, None, 1.0)
        released += 1
    t2 = time.perf_counter()
    if released != length or core.counts(QUEUE)[JobState.COMPLETED] != length:
        raise RuntimeError(f"chain: completed {released} of {length}")
    # the head was never blocked: length - 1 releases over the run
    return t1 - t0, (length - 1) / (t2 - t1)


def _bulk_barrier_add(n: int) -> tuple[float, float]:
    """(seconds for one add_bulk of `n` barrier waiters, seconds for `n` plain jobs)."""
    core = CoreState(seed=1)
    gate = core.add([JobSpec(name="gate", queue="gates", data=b"null", delay=1e12)], 0.0)
    gate_id = gate[0][0].id
    waiters = [
        _spec(depends_on_job_ids=(gate_id,), depends_on_tags=(f"a{i}", f"b{i}")) for i in range(n)
    ]
    gc.collect()
    t0 = time.perf_counter()
    core.add(waiters, 0.0)
    t1 = time.perf_counter()
    plain = CoreState(seed=1)
    specs = [_spec() for _ in range(n)]
    gc.collect()
    t2 = time.perf_counter()
    plain.add(specs, 0.0)
    return t1 - t0, time.perf_counter() - t2


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 rep, 10x fewer jobs")
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    jobs, barriers, chain = 100_000 // scale, 10_000 // scale, 100_000 // scale

    with_add: list[float] = []
    with_run: list[float] = []
    without_add: list[float] = []
    without_run: list[float] = []
    registered = 0
    for rep in range(reps):
        print(f"barrier overhead: repetition {rep + 1}/{reps}", file=sys.stderr)
        add_us, run_us, registered = _barrier_round(jobs, barriers, seed=rep + 1)
        with_add.append(add_us)
        with_run.append(run_us)
        add_us, run_us, _ = _barrier_round(jobs, 0, seed=rep + 1)
        without_add.append(add_us)
        without_run.append(run_us)
    chain_add: list[float] = []
    chain_rate: list[float] = []
    for rep in range(reps):
        print(f"chain: repetition {rep + 1}/{reps}", file=sys.stderr)
        add_s, rate = _chain_round(chain)
        chain_add.append(add_s)
        chain_rate.append(rate)

    bulk_sizes = (250, 500, 1_000) if args.quick else (1_000, 2_000, 4_000)
    bulk = {n: _bulk_barrier_add(n) for n in bulk_sizes}

    med = statistics.median
    run_ratio = med(with_run) / med(without_run)
    add_ratio = med(with_add) / med(without_add)
    verdict = "PASS" if run_ratio < GOAL_RATIO else "MISS"
    print(
        f"Pure core (CoreState, no runtime); Python {platform.python_version()}, "
        f"{platform.machine()}; median of {reps} rep(s)."
    )
    print()
    print(
        f"Barrier overhead: {jobs:,} jobs with {JOB_TAGS} tags of {VOCABULARY:,}; "
        f"{registered:,} registered {BARRIER_TAGS}-tag barriers, each with a blocked waiter."
    )
    print()
    print("| Figure | Without barriers | With barriers | Ratio | Goal |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| take + complete, µs/job | {med(without_run):.2f} | {med(with_run):.2f} "
        f"| {run_ratio:.2f}x | < {GOAL_RATIO:.0f}x: {verdict} |"
    )
    print(f"| add, µs/job | {med(without_add):.2f} | {med(with_add):.2f} | {add_ratio:.2f}x | — |")
    print()
    print(f"Dependency chain of {chain:,} jobs (each depends on the previous one).")
    print()
    print("| Figure | Value |")
    print("|---|---:|")
    print(f"| add the chain (one add per job), s | {med(chain_add):.2f} |")
    print(f"| released while running the chain, jobs/s | {med(chain_rate):,.0f} |")
    print(f"| per released job (take + complete + release), µs | {1e6 / med(chain_rate):.2f} |")
    print()
    print("One `add_bulk` of n jobs each waiting on its own 2-tag barrier (plus a gate job).")
    print()
    print("| n | With barriers, s | Plain jobs, s | µs per barrier job |")
    print("|---:|---:|---:|---:|")
    for n, (with_s, plain_s) in bulk.items():
        print(f"| {n:,} | {with_s:.3f} | {plain_s:.3f} | {with_s / n * 1e6:,.0f} |")


if __name__ == "__main__":
    main()
