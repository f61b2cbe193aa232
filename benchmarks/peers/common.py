"""What every peer adapter shares: the workload sizes, the sample type and the statistics."""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

Sample = dict[str, Any]  # figures; keys ending in "_raw_*" hold per-job lists


@dataclass(frozen=True)
class Params:
    """Workload sizes, the same for every peer within a workload."""

    w1_jobs: int = 5_000
    concurrency: int = 50
    w2_samples: int = 500
    w2_warmup: int = 50
    w3_jobs: int = 1_000
    w3_max_delay: float = 0.200
    w3_seed: int = 1234
    w4_parents: int = 100
    w4_children: int = 20

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Env:
    """Where a peer finds its server and scratch space (set by the runner)."""

    redis_url: str = ""
    pg_dsn: str = ""
    tmpdir: str = ""


def percentile(values: list[float], p: float) -> float:
    """The `p`-th percentile (0–100), nearest-rank on the sorted values."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def delays(p: Params) -> list[float]:
    rng = random.Random(p.w3_seed)
    return [rng.uniform(0.0, p.w3_max_delay) for _ in range(p.w3_jobs)]


def w1_sample(n: int, enqueue_s: float, process_s: float, **extra: float) -> Sample:
    """W1's figures from its two phases, timed back to back on one clock: end to end is
    the clock started before the first enqueue and stopped at the last job's run."""
    return {
        "e2e_jobs_s": n / (enqueue_s + process_s),
        "enqueue_jobs_s": n / enqueue_s,
        "process_jobs_s": n / process_s,
        "process_us_per_job": process_s / n * 1e6,
        **extra,
    }


def w2_sample(to_start: list[float], to_done: list[float]) -> Sample:
    return {
        "start_p50_us": statistics.median(to_start) * 1e6,
        "start_p99_us": percentile(to_start, 99) * 1e6,
        "done_p50_us": statistics.median(to_done) * 1e6,
        "done_p99_us": percentile(to_done, 99) * 1e6,
        "start_raw_us": [x * 1e6 for x in to_start],
        "done_raw_us": [x * 1e6 for x in to_done],
    }


async def w2_rounds(
    p: Params,
    started: list[float],
    one_job: Callable[[], Awaitable[object]],
    reset: Callable[[], object] | None = None,
) -> Sample:
    """W2's loop for every async peer: `one_job()` enqueues one job and returns once it has
    finished; the processor writes its start time into ``started[0]``. `reset` (clearing a
    "finished" event) runs before the clock is read, so it is not part of the sample."""
    to_start: list[float] = []
    to_done: list[float] = []
    for i in range(p.w2_warmup + p.w2_samples):
        if reset is not None:
            reset()
        t0 = now()
        await one_job()
        t1 = now()
        if i >= p.w2_warmup:
            to_start.append(started[0] - t0)
            to_done.append(t1 - t0)
    return w2_sample(to_start, to_done)


def w3_sample(lateness: list[float], expected: int, enqueue_s: float) -> Sample:
    if len(lateness) != expected:
        raise RuntimeError(f"W3: {len(lateness)} of {expected} jobs ran")
    return {
        "late_p50_ms": statistics.median(lateness) * 1e3,
        "late_p99_ms": percentile(lateness, 99) * 1e3,
        "late_max_ms": max(lateness) * 1e3,
        "early": float(sum(1 for x in lateness if x < 0)),
        "enqueue_ms": enqueue_s * 1e3,
        "late_raw_ms": [x * 1e3 for x in lateness],
    }


def w4_sample(parents: int, children: int, add_s: float, process_s: float) -> Sample:
    return {
        "add_flows_s": parents / add_s,
        "wall_ms": process_s * 1e3,
        "child_jobs_s": parents * children / process_s,
        "all_jobs_s": parents * (children + 1) / process_s,
    }


class Counter:
    """Counts processor runs; `done` is set when the `total`-th has run (no polling)."""

    def __init__(self, total: int, event: Any) -> None:
        self.total = total
        self.n = 0
        self.event = event

    def hit(self) -> None:
        self.n += 1
        if self.n == self.total:
            self.event.set()


def now() -> float:
    return time.perf_counter()
