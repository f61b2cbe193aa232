"""A job page's timeline, told from the job's own record: added, attempts that failed (with
the reason from their stack trace) and were retried, the latest start, progress, logs, where
the job is now (delayed until when, waiting for children) and how it ended, with the times
the record keeps. On asyncio and trio, under a virtual clock so the times are exact, on a
runtime and through a client."""

from __future__ import annotations

import html
import re
from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime

from actorq import (
    Backoff,
    EventStream,
    Job,
    JobDelayed,
    JobFailedError,
    JobWaitingChildren,
    VirtualClock,
)

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from actorq.web import dashboard  # noqa: E402
from actorq.web._html import when  # noqa: E402


async def _timeline(rt: Any, job_id: int) -> list[tuple[str, str, str]]:
    """(kind, time shown, text) of each entry of the job page's timeline."""
    transport = httpx.ASGITransport(app=dashboard(rt))
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
        text = (await client.get(f"/jobs/{job_id}")).text
    found = re.search(r"<ol id=timeline class=timeline>(.*?)</ol>", text, re.S)
    assert found is not None
    return [
        (kind, html.unescape(at), html.unescape(rest.strip()))
        for kind, at, rest in re.findall(
            r'<li data-kind="([a-z-]+)"><span class=when>(.*?)</span>(.*?)</li>', found.group(1)
        )
    ]


async def _until(events: EventStream, kind: type, job_id: int) -> None:
    with anyio.fail_after(10):  # a hang guard, not a timing assertion
        async for event in events:
            if isinstance(event, kind) and getattr(event, "job_id", None) == job_id:
                return


async def test_failed_attempts_retries_progress_logs_and_the_completion(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock(start=100.0)) as rt:
        q = rt.queue("q")

        async def flaky(job: Job) -> str:
            if job.attempts_started < 3:
                raise ValueError(f"boom {job.attempts_started}")
            await job.update_progress(50)
            await job.log("nearly there")
            return "done"

        job = await q.add("flaky", attempts=3, backoff=Backoff.fixed(10))
        rt.worker(q, flaky)
        with anyio.fail_after(10):
            assert await job.wait_until_finished() == "done"
        entries = await _timeline(rt, job.id)
    assert [kind for kind, _, _ in entries] == [
        "added", "failed", "retried", "failed", "retried", "started", "progress", "log",
        "completed",
    ]  # fmt: skip
    assert entries[0][1] == when(100.0)
    assert entries[1][2] == "attempt 1 failed: ValueError: boom 1"
    assert entries[3][2] == "attempt 2 failed: ValueError: boom 2"
    assert entries[5] == ("started", when(job.processed_at), "attempt 3 of 3 started")
    assert job.processed_at == 120.0  # two backoffs of 10 s
    assert entries[6][2] == "progress (latest): 50" and entries[7][2] == "log: nearly there"
    assert entries[8][:2] == ("completed", when(job.finished_at))


async def test_a_step_job_delayed_shows_when_it_is_due(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock(start=0.0)) as rt:
        q = rt.queue("q")

        async def step(job: Job) -> None:
            await job.move_to_delayed(rt.clock.now() + 500, next_step="check")

        async with rt.events() as events:
            job = await q.add("step", {"step": "start"})
            rt.worker(q, step)
            await _until(events, JobDelayed, job.id)
        entries = await _timeline(rt, job.id)
    assert [kind for kind, _, _ in entries] == ["added", "started", "delayed"]
    assert entries[2][1] == when(500.0)


async def test_a_job_failed_for_good_ends_with_its_reason_and_a_waiting_parent_says_so(
    make_runtime: MakeRuntime,
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("q")

        async def bad(job: Job) -> Any:
            if job.name == "parent":
                await q.add("child", parent=job, delay=1000)  # stays open
                await job.move_to_waiting_children()
            raise RuntimeError("disk full")

        async with rt.events() as events:
            failing = await q.add("bad", attempts=2)
            parent = await q.add("parent")
            worker = rt.worker(q, bad)
            with anyio.fail_after(10), pytest.raises(JobFailedError):
                await failing.wait_until_finished()
            await _until(events, JobWaitingChildren, parent.id)
        await worker.close()
        ended = await _timeline(rt, failing.id)
        waits = await _timeline(rt, parent.id)
    assert [k for k, _, _ in ended] == ["added", "failed", "retried", "started", "failed"]
    assert ended[-1][2] == "failed for good: RuntimeError: disk full"
    assert ended[-1][1] == when(failing.finished_at)
    assert [k for k, _, _ in waits] == ["added", "started", "waiting-children"]
