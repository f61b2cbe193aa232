"""The mixed workload whose end state the replay and journal tests rebuild from a change log.

Shared by tests/test_api_replay.py and tests/test_journal_runtime.py.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

from actorq import Backoff, Job, JobFailedError, Runtime, UnrecoverableError, VirtualClock
from actorq._core.records import Retention


async def workload(
    rt: Runtime, clock: VirtualClock, *, advance: float | None = None, extended: bool = False
) -> dict[str, Job]:
    """A mix of everything that changes state; leaves no job active.

    `advance`: seconds to move a clock without autojump before waiting, or nothing would come
    due (retries' backoff, `later`, `parked-delayed`).

    `extended`: also the payloads and options a durable journal must carry through its codec
    (a None result, a cleared progress, odd text and number edge cases, an infinite
    `max_delay`, a timeout, a `remove_on_fail` retention) and a deduplicated add. Off, the
    jobs, ids and results are exactly the ones test_api_replay.py pins down.
    """
    work = rt.queue("work")
    parked = rt.queue("parked")

    async def process(job: Job) -> Any:
        kind = job.data["kind"]
        if kind == "flaky" and job.attempts_started < 3:
            raise RuntimeError(f"try {job.attempts_started}")
        if kind == "fatal":
            raise UnrecoverableError("fatal")
        if kind == "steps":
            await job.update_progress(50)
            if extended:
                await job.update_progress(None)
            await job.log("half")
            extra = {"f": 0.1, "t": [1, 2]} if extended else {}
            await job.update_data({**job.data, "seen": True, **extra})
        if kind == "none":
            return None
        result = {"id": job.id, "at": clock.now()}
        if extended:
            result["nested"] = {"a": [1.5, "é", None]}
        return result

    rt.worker(work, process, concurrency=2)
    await parked.pause()
    jobs: dict[str, Job] = {}
    jobs["plain"] = await work.add("plain", {"kind": "plain"})
    if extended:
        jobs["none"] = await work.add("none", {"kind": "none"})
    jobs["flaky"] = await work.add(
        "flaky",
        {"kind": "flaky"},
        attempts=4,
        backoff=Backoff.exponential(2, jitter=0.5, max_delay=math.inf if extended else None),
    )
    # Left out rather than passed as None, so the plain run's add gets exactly the options it
    # always did.
    fatal_timeout = {"timeout": 30} if extended else {}
    jobs["fatal"] = await work.add("fatal", {"kind": "fatal"}, attempts=3, **fatal_timeout)
    jobs["steps"] = await work.add("steps", {"kind": "steps"}, priority=3, tags=["a", "b"])
    jobs["gone"] = await work.add("gone", {"kind": "plain"}, remove_on_complete=True)
    if extended:
        jobs["kept"] = await work.add("kept", {"kind": "plain"}, remove_on_fail=Retention(count=5))
    jobs["later"] = await work.add("later", {"kind": "plain"}, delay=30)
    jobs["far"] = await work.add("far", {"kind": "plain"}, delay=10_000)
    jobs["idem"] = await work.add("idem", {"kind": "plain"}, idempotency_key="k-1")
    if extended:
        again = await work.add("idem", {"kind": "other"}, idempotency_key="k-1")
        assert again.id == jobs["idem"].id
    specs: list[dict[str, Any]] = [
        {"name": "p1", "data": {"i": 1}},
        {"name": "p2", "data": {"i": 2}, "priority": 5},
        {"name": "p3", "data": {"i": 3}, "lifo": True},
        {"name": "p4", "data": {"i": 4}, "idempotency_key": "k-2"},
    ]
    if extended:
        specs += [
            {"name": "p5", "data": "text \n with \u2028 odd \x00 chars"},
            {"name": "p6", "data": [1, 2.0, -0.0, 1e300, 2**63 - 1]},
        ]
    bulk = await parked.add_bulk(specs)
    jobs.update({f"p{i + 1}": job for i, job in enumerate(bulk)})
    jobs["cancelled"] = await parked.add("c", {"i": 0})
    await parked.cancel(jobs["cancelled"].id, reason="test")
    await parked.remove(jobs["p1"].id)
    jobs["parked-delayed"] = await parked.add("pd", None, delay=5)
    if advance is not None:
        await clock.advance(advance)
    with anyio.fail_after(5):
        for key in ("plain", "none", "flaky", "steps", "later", "idem"):
            if key in jobs:
                await jobs[key].wait_until_finished()
        with pytest.raises(JobFailedError):
            await jobs["fatal"].wait_until_finished()
    await clock.run_until_idle()
    return jobs
