"""A job runs and returns its value; a retry backs off in virtual time (locally and through
a client)."""

from __future__ import annotations

from runtimes import MakeRuntime

import actorq
from actorq import Backoff, VirtualClock


async def test_a_job_runs_and_returns_its_value(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        q = rt.queue("emails")

        async def send(job: actorq.Job) -> dict[str, str]:
            return {"sent": job.data["to"]}

        rt.worker(q, send, concurrency=4)
        job = await q.add("send", {"to": "a@example.com"})
        assert await job.wait_until_finished() == {"sent": "a@example.com"}
        assert job.state is actorq.JobState.COMPLETED
        assert (await q.counts())["completed"] == 1


async def test_retry_after_one_hour_backoff_runs_in_virtual_time(make_runtime: MakeRuntime) -> None:
    clock = VirtualClock()
    async with make_runtime(clock=clock) as rt:
        q = rt.queue("flaky")
        calls: list[float] = []

        async def flaky(job: actorq.Job) -> int:
            calls.append(clock.now())
            if len(calls) < 3:
                raise ValueError("not yet")
            return len(calls)

        rt.worker(q, flaky)
        job = await q.add("f", attempts=3, backoff=Backoff.fixed(3600))
        assert await job.wait_until_finished() == 3
        assert calls == [0.0, 3600.0, 7200.0]
        assert job.attempts_made == 3
