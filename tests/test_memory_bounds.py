"""Memory stays flat (issue 15): what a runtime holds does not grow with the jobs that went
through it, the waits that gave up, or the events nobody read. Each case runs in memory and
on a journal; the structures are read through the runtime's core and engine, the one place
they live."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from actorq import Job, Runtime, VirtualClock
from actorq._core.finished import COMPACT_AFTER

JOBS = 3 * COMPACT_AFTER


@pytest.fixture(params=["memory", "journal"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Runtime]:
    if request.param == "memory":
        return lambda: Runtime(clock=VirtualClock())
    return lambda: Runtime(tmp_path / "j", clock=VirtualClock())


async def noop(job: Job) -> None:
    return None


async def test_jobs_removed_on_complete_leave_nothing_behind(
    runtime: Callable[[], Runtime],
) -> None:
    async with runtime() as rt:
        q = rt.queue("q")
        jobs = await q.add_bulk(
            [{"name": "j", "data": i, "remove_on_complete": True} for i in range(JOBS)]
        )
        worker = rt.worker(q, noop, concurrency=16)
        await rt.wait(jobs)
        await worker.close()
        assert (await q.counts())["completed"] == 0
        core = rt._core
        assert core.jobs == {}
        assert len(core.queues["q"].completed) == 0
