"""`start_in_background`: a runtime on its own thread, driven from sync code and from
another event loop (asyncio and trio); plus the HTML views and `wait_for`."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from runtimes import MakeRuntime

from actorq import Job, JobFailedError, RuntimeClosedError, VirtualClock
from actorq._background import start_in_background
from actorq._display import job_html, queue_html, queue_snapshot_html, runtime_html, wait_for

# The facade's tests start Runtimes of their own: they test its thread, its loop and its
# stop (one drives a client of a host through it); `wait_for` runs on make_runtime.


async def double(job: Job) -> int:
    await anyio.lowlevel.checkpoint()
    return int(job.data["n"]) * 2


def portal_threads() -> set[threading.Thread]:
    """Threads alive now. Compared as sets, not counts: an idle worker thread left by an
    earlier test may exit meanwhile, which a count would read as this test's leak hidden."""
    return {t for t in threading.enumerate() if t is not threading.current_thread()}


def threads_left(before: set[threading.Thread], within: float = 5.0) -> set[threading.Thread]:
    """Threads started since `before` still alive after up to `within` seconds: an idle
    worker thread of the stopped loop may take a moment to see that it should exit."""
    deadline = time.monotonic() + within
    while (left := portal_threads() - before) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def test_the_sync_facade_works_through_a_client_of_a_host() -> None:
    host = start_in_background(listen="127.0.0.1:0")
    try:
        address = host.runtime.address  # type: ignore[attr-defined]
        client = start_in_background(connect=f"actorq://{address}")
        try:
            client.worker("q", double, concurrency=4)  # runs in the client's thread
            job = client.queue("q").add("double", {"n": 4})
            assert job.wait_until_finished() == 8
            assert host.counts()["q"]["completed"] == 1  # the host's engine did it
        finally:
            client.stop()
    finally:
        host.stop()


def test_sync_facade_runs_jobs_and_stops() -> None:
    before = portal_threads()
    bg = start_in_background()
    try:
        bg.worker("q", double, concurrency=4)
        q = bg.queue("q")
        job = q.add("double", {"n": 21})
        assert job.wait_until_finished() == 42
        jobs = q.add_bulk([{"name": "double", "data": {"n": i}} for i in range(10)])
        assert [j.wait_until_finished() for j in jobs] == [2 * i for i in range(10)]
        assert q.counts()["completed"] == 11
        assert bg.counts()["q"]["completed"] == 11
        again = q.get_job(job.id)
        assert again is not None
        assert again.return_value == 42
        assert "<table" in bg._repr_html_()
    finally:
        bg.stop()
    bg.stop()  # idempotent
    assert bg.stopped
    assert threads_left(before) == set()  # the portal's thread is joined
    with pytest.raises(RuntimeClosedError):
        bg.queue("q")


def test_context_manager_and_virtual_time() -> None:
    clock = VirtualClock()
    with start_in_background(clock=clock) as bg:
        bg.worker("later", double)
        job = bg.queue("later").add("double", {"n": 1}, delay=24 * 3600)
        assert job.wait_until_finished() == 2
        assert job.finished_at == pytest.approx(24 * 3600)
    assert bg.stopped


def test_failure_raises_in_the_caller() -> None:
    async def boom(job: Job) -> None:
        raise ValueError("no")

    with start_in_background() as bg:
        bg.worker("q", boom)
        job = bg.queue("q").add("x")
        with pytest.raises(JobFailedError, match="no"):
            job.wait_until_finished()


async def test_async_facade_from_another_loop() -> None:
    bg = await anyio.to_thread.run_sync(start_in_background)
    try:
        # The runtime lives on another thread: this loop only awaits futures.
        assert bg.runtime is not None
        bg.worker("q", double, concurrency=2)
        q = bg.aqueue("q")
        job = await q.add("double", {"n": 5})
        assert await job.wait_until_finished() == 10
        jobs = await q.add_bulk([{"name": "double", "data": {"n": i}} for i in range(5)])
        assert await wait_for(jobs) == [0, 2, 4, 6, 8]
        assert (await q.counts())["completed"] == 6
        assert (await bg.acounts())["q"]["completed"] == 6

        async def on_runtime_loop(x: int) -> int:
            await anyio.lowlevel.checkpoint()
            return x + 1

        assert await bg.call(on_runtime_loop, 1) == 2
        assert await bg.call(lambda: 3) == 3
    finally:
        await bg.astop()
    assert bg.stopped


def test_journal_survives_a_restart(tmp_path: Path) -> None:
    with start_in_background(path=tmp_path / "j") as bg:
        job_id = bg.queue("q").add("kept", {"n": 1}).id
    with start_in_background(path=tmp_path / "j") as bg:
        q = bg.queue("q")
        job = q.get_job(job_id)
        assert job is not None
        assert job.state.value == "waiting"
        bg.worker(q, double)
        assert job.wait_until_finished() == 2


def test_a_script_that_forgets_to_stop_still_exits(tmp_path: Path) -> None:
    script = (
        "from actorq._background import start_in_background\n"
        "bg = start_in_background()\n"
        "bg.queue('q').add('x', {'n': 1})\n"
        "print('added')\n"
    )
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "added"
    assert time.perf_counter() - t0 < 30


def test_html_views_escape() -> None:
    with start_in_background() as bg:
        job: Any = bg.queue("q").add("x<script>", {"html": "<b>&</b>"})
        text = job_html(job.unwrapped)
        assert "<script>" not in text
        assert "&lt;script&gt;" in text
        assert "&lt;b&gt;" in text
        assert "waiting" in text
        assert job._repr_html_() == text
        assert "waiting" in runtime_html(bg.runtime)
        snapshot = queue_snapshot_html(bg.runtime.queue("q"))
        assert "&#x27;q&#x27;" in snapshot
        assert ">1<" in snapshot  # one waiting job
    assert "completed" in queue_html({"completed": 3}, "q<")
    assert "q&lt;" in queue_html({"completed": 3}, "q<")


async def test_wait_for_with_progress(
    make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("q")
        rt.worker(q, double, concurrency=3)
        jobs = await q.add_bulk([{"name": "d", "data": {"n": i}} for i in range(20)])
        assert await wait_for(jobs, progress=True) == [2 * i for i in range(20)]

        async def boom(job: Job) -> None:
            raise ValueError("bad")

        rt.worker("bad", boom)
        bad = await rt.queue("bad").add("x")
        out = await wait_for([bad, jobs[0]], return_exceptions=True)
        assert isinstance(out[0], JobFailedError)
        assert out[1] == 0
        with pytest.raises(JobFailedError):
            await wait_for([bad])
    assert "20/20" in capsys.readouterr().err


def test_the_sync_facade_takes_issue_17s_calls() -> None:
    """Deduplication, groups, schedulers, global concurrency, limiter and job control, all
    blocking calls from plain code."""
    clock = VirtualClock(autojump=False)
    with start_in_background(clock=clock) as bg:
        q = bg.queue("q")
        first = q.add("double", {"n": 1}, deduplication={"id": "k", "ttl": 60}, delay=100)
        again = q.add("double", {"n": 2}, deduplication={"id": "k", "ttl": 60}, delay=100)
        assert again.id == first.id
        assert q.get_deduplication_job_id("k") == first.id
        assert q.remove_deduplication_key("k") is True
        assert q.get_deduplication_job_id("k") is None
        q.set_global_concurrency(2)
        assert q.get_global_concurrency() == 2
        assert q.upsert_job_scheduler("s", every=3600, template={"name": "double"}) is not None
        assert [view["id"] for view in q.get_job_schedulers()] == ["s"]
        assert q.remove_job_scheduler("s") is True
        first.promote()
        worker = bg.worker(
            q,
            double,
            concurrency=4,
            limiter={"max": 100, "duration": 1},
            group_concurrency=1,
            group_limiter={"max": 10, "duration": 1},
        )
        assert first.wait_until_finished() == 2
        jobs = q.add_bulk([{"name": "double", "data": {"n": i}, "group": "g"} for i in range(3)])
        assert [job.group for job in jobs] == ["g", "g", "g"]
        assert [job.wait_until_finished() for job in jobs] == [0, 2, 4]
        assert q.get_rate_limit_ttl() == 0.0
        worker.pause()
        assert worker.paused
        worker.resume()
        assert not worker.paused
        assert q.counts()["completed"] == 4
