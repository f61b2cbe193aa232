"""Dashboard pages with many jobs: ``python -m benchmarks.dashboard [--jobs N] [--reps R]
[--dependents D]``.

One in-memory `Runtime` holding ``--jobs`` jobs (1,000,000 by default) in queue ``big``:
all waiting but a thousand that are cancelled (spread through the ids), one failed at the
very start. Each page is rendered ``--reps`` times (20 by default) through httpx's ASGI
transport (the whole app, no network) and the median and the maximum are printed:

* the overview (every queue's counts),
* ``big``'s first page of waiting jobs, and a page 1,000 pages deep (its cursor: the waiting
  line is read from the head, so a deep page costs its depth),
* the waiting jobs sorted by id (``sort=id``, oldest added first, and ``sort=-id``), first
  page and 1,000 pages deep: a run of ids from the cursor, however deep,
* the first page of cancelled jobs (no index of their own: ids downward, a bounded budget),
  and oldest first,
* the failed job's page (found in the oldest id: the finished line is read from its end).
* a job's page (data, dependencies, flow, timeline),
* the page of a prerequisite that ``--dependents`` jobs (100,000 by default, in queue
  ``fan``, beside the others) list in ``depends_on``, and one of those dependents' pages:
  their dependency graphs and relations (``job.get_dependents()``, bounded on the page).

Goal: each under a second (the issue's "well under"). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from typing import Any

import anyio
import httpx

from actorq import DependsOn, Job, JobFailedError, Runtime
from actorq.web import dashboard


async def _fan(rt: Runtime, dependents: int) -> tuple[int, int]:
    """One waiting job that `dependents` blocked jobs depend on: (its id, one of theirs)."""
    fan = rt.queue("fan")
    root = await fan.add("prerequisite")
    last = root.id
    chunk = 10_000
    for start in range(0, dependents, chunk):
        n = min(chunk, dependents - start)
        batch = await fan.add_bulk(
            [{"name": "dependent", "depends_on": DependsOn(job_ids=[root.id])}] * n
        )
        last = batch[-1].id
    return root.id, last


async def _fill(rt: Runtime, jobs: int) -> dict[str, str]:
    big = rt.queue("big")
    failing = await big.add("boom", attempts=1)

    async def boom(job: Job) -> None:
        raise ValueError("boom")

    worker = rt.worker("big", boom)
    with contextlib.suppress(JobFailedError):  # it fails by design
        await failing.wait_until_finished()
    await worker.close()
    chunk = 10_000
    added = 1
    cancel_every = max(1, jobs // 1000)
    while added < jobs:
        n = min(chunk, jobs - added)
        batch = await big.add_bulk([{"name": "work", "data": {"i": added + i}} for i in range(n)])
        for job in batch[::cancel_every][: max(1, 1000 * n // jobs)]:
            await job.cancel()
        added += n
        if added % 100_000 < chunk:
            print(f"  {added:,} jobs", file=sys.stderr)
    mid = (await big.get_jobs_page("waiting", cursor=jobs // 2, limit=1))[0][0].id
    return {
        "overview": "/",
        "waiting, first page": "/queues/big?state=waiting",
        "waiting, 1,000 pages deep": "/queues/big?state=waiting&cursor=50000",
        "waiting, oldest added first": "/queues/big?state=waiting&sort=id",
        "waiting, oldest first, 1,000 pages deep": "/queues/big?state=waiting&sort=id&cursor=50000",
        "waiting, newest added first": "/queues/big?state=waiting&sort=-id",
        "waiting, newest first, 1,000 pages deep": (
            f"/queues/big?state=waiting&sort=-id&cursor={max(0, jobs - 50_000)}"
        ),
        "cancelled, first page": "/queues/big?state=cancelled",
        "cancelled, oldest added first": "/queues/big?state=cancelled&sort=id",
        "failed, first page": "/queues/big?state=failed",
        "failed job's page": f"/jobs/{failing.id}",
        "a waiting job's page": f"/jobs/{mid}",
    }


async def main(jobs: int, reps: int, dependents: int) -> None:
    async with Runtime() as rt:
        start = time.perf_counter()
        pages = await _fill(rt, jobs)
        if dependents:
            root, one = await _fan(rt, dependents)
            pages[f"a prerequisite's page ({dependents:,} dependents)"] = f"/jobs/{root}"
            pages["one of its dependents' page"] = f"/jobs/{one}"
        print(f"  filled in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        counts = await rt.queue("big").counts()
        transport = httpx.ASGITransport(app=dashboard(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            print(f"{jobs:,} jobs: " + ", ".join(f"{k} {v:,}" for k, v in counts.items() if v))
            print("| page | median | max | bytes |\n|---|---:|---:|---:|")
            for label, url in pages.items():
                times: list[float] = []
                size = 0
                for _ in range(reps):
                    t0 = time.perf_counter()
                    res: Any = await client.get(url)
                    times.append(time.perf_counter() - t0)
                    assert res.status_code == 200, (url, res.status_code)
                    size = len(res.content)
                med, worst = statistics.median(times), max(times)
                goal = "PASS" if med < 1.0 else "MISS"
                print(
                    f"| {label} | {med * 1000:.1f} ms {goal} | {worst * 1000:.1f} ms | {size:,} |"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--dependents", type=int, default=100_000)
    args = parser.parse_args()
    anyio.run(main, args.jobs, args.reps, args.dependents)
