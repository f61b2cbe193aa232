"""The overview's per-minute charts, counted from the runtime's events: jobs removed as they
finish still count, each in the minute it finished (under a virtual clock), what finished
before the dashboard existed comes from the finished lines once and is not counted twice,
a subscription that overflowed says how much it missed, and the live stream carries the
chart. On asyncio and trio, on a runtime and through a client (the dashboard reading and
subscribing through the connection)."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime

from actorq import Job, JobFailedError, JobNotFoundError, VirtualClock

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from actorq import web  # noqa: E402
from actorq.web import dashboard  # noqa: E402


async def _overview(app: Any) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
        res = await client.get("/")
    assert res.status_code == 200
    return str(res.text)


def _chart(text: str, queue: str) -> tuple[int, int, list[int]]:
    """(completed, failed, the minutes with a green bar, 0 the oldest) of a queue's chart."""
    row = re.search(rf'<tr data-queue="{queue}">.*?</tr>', text, re.S)
    assert row is not None, queue
    totals = re.search(r'data-completed="(\d+)" data-failed="(\d+)"', row.group(0))
    assert totals is not None
    bars = [int(x) // 6 for x in re.findall(r'<rect x="(\d+)"[^>]*fill="#3a9d5d"', row.group(0))]
    return int(totals.group(1)), int(totals.group(2)), bars


async def _run(rt: Any, jobs: list[Job]) -> None:
    async def work(job: Job) -> str:
        if job.name == "bad":
            raise ValueError("no")
        return "ok"

    worker = rt.worker(jobs[0].queue, work, concurrency=4)
    with anyio.fail_after(10):
        for job in jobs:
            # A job removed as it finished may be heard of as "not found" (a waiter that
            # came after its removal); either way it ended.
            with contextlib.suppress(JobFailedError, JobNotFoundError):
                await job.wait_until_finished()
    await worker.close()


async def test_jobs_removed_as_they_finish_are_still_counted(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock(start=1000.0)) as rt:
        app = dashboard(rt)
        q = rt.queue("mail")
        jobs = [await q.add("send", remove_on_complete=True) for _ in range(5)]
        jobs += [await q.add("bad", remove_on_fail=True) for _ in range(2)]
        await _run(rt, jobs)
        counts = await q.counts()
        text = await _overview(app)
    assert counts["completed"] == counts["failed"] == 0  # nothing kept to count from
    assert _chart(text, "mail")[:2] == (5, 2)


async def test_each_minute_counts_what_finished_in_it_and_old_minutes_leave(
    make_runtime: MakeRuntime,
) -> None:
    clock = VirtualClock(start=1000.0)  # minute 16; the window ends at the current minute
    async with make_runtime(clock=clock) as rt:
        app = dashboard(rt)
        q = rt.queue("mail")
        await _run(rt, [await q.add("send", remove_on_complete=True) for _ in range(3)])
        first = await _overview(app)
        await clock.advance(120)
        await _run(rt, [await q.add("send", remove_on_complete=True) for _ in range(2)])
        later = await _overview(app)
        await clock.advance(14 * 60)  # minute 16 has left the 15-minute window
        last = await _overview(app)
    assert _chart(first, "mail") == (3, 0, [14])
    assert _chart(later, "mail") == (5, 0, [12, 14])
    assert _chart(last, "mail") == (2, 0, [0])


async def test_what_finished_before_the_dashboard_counts_once(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock(start=1000.0)) as rt:
        q = rt.queue("mail")
        await _run(rt, [await q.add("send") for _ in range(2)])  # kept, before the dashboard
        app = dashboard(rt)
        await _run(rt, [await q.add("send") for _ in range(3)])  # kept, and in its buffer
        await _run(rt, [await q.add("send", remove_on_complete=True)])  # only in its buffer
        text = await _overview(app)
        again = await _overview(app)
    assert _chart(text, "mail")[:2] == (6, 0)
    assert _chart(again, "mail")[:2] == (6, 0)


async def test_an_overflowed_subscription_says_how_many_events_it_missed(
    make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web, "RATE_BUFFER", 3)
    async with make_runtime(clock=VirtualClock()) as rt:
        app = dashboard(rt)
        q = rt.queue("mail")
        await q.add_bulk([{"name": "send"} for _ in range(10)])  # ten JobAdded events
        text = await _overview(app)
    note = re.search(r"<p class=notice id=uncounted>(\d+) events were dropped", text)
    assert note is not None and int(note.group(1)) == 7
