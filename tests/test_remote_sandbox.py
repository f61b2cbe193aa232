"""Sandboxed processors (actorq._remote.sandbox): ``rt.worker(queue, "module:function",
processes=n)`` runs the processor in child processes, clients of the runtime."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from actorq import InvalidOptionError, JobFailedError, Runtime

HERE = str(Path(__file__).parent)


@pytest.fixture(autouse=True)
def children_import_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))


async def test_jobs_run_in_child_processes_with_the_job_api() -> None:
    async with Runtime() as rt:
        q = rt.queue("sb")
        rt.worker(q, "sandbox_work:with_job_api", processes=2)
        jobs = await q.add_bulk([{"name": "x", "data": i} for i in range(6)])
        results = [await job.wait_until_finished(timeout=60) for job in jobs]
        assert [r["data"] for r in results] == list(range(6))
        assert os.getpid() not in {r["pid"] for r in results}
        seen = await q.get_job(jobs[0].id)
        assert seen is not None and seen.progress == 50 and seen.logs[0].startswith("in ")


async def test_a_plain_function_runs_in_the_child() -> None:
    async with Runtime() as rt:
        q = rt.queue("cpu")
        rt.worker(q, "sandbox_work:spin", processes=1)
        pid = await (await q.add("x", 1000)).wait_until_finished(timeout=60)
        assert pid != os.getpid()


async def test_a_killed_child_fails_only_the_attempt_it_ran(tmp_path: Path) -> None:
    async with Runtime() as rt:
        q = rt.queue("kill")
        rt.worker(q, "sandbox_work:hang_first", processes=1, lock_duration=60)
        marker = tmp_path / "pid"
        job = await q.add("x", str(marker), attempts=2)
        with anyio.fail_after(60):
            while not marker.exists():  # noqa: ASYNC110 - another process writes the file
                await anyio.sleep(0.05)
        os.kill(int(marker.read_text()), signal.SIGKILL)
        assert await job.wait_until_finished(timeout=60) == "second attempt"
        seen = await q.get_job(job.id)
        assert seen is not None
        assert seen.attempts_made == 2 and seen.stalled_counter == 0
        assert "exited with -9" in (
            seen.stacktrace[0] if seen.stacktrace else seen.failed_reason or ""
        )


async def test_a_killed_child_fails_a_job_without_attempts_left(tmp_path: Path) -> None:
    async with Runtime() as rt:
        q = rt.queue("kill1")
        rt.worker(q, "sandbox_work:hang_first", processes=1, lock_duration=60)
        marker = tmp_path / "pid"
        job = await q.add("x", str(marker))
        with anyio.fail_after(60):
            while not marker.exists():  # noqa: ASYNC110 - another process writes the file
                await anyio.sleep(0.05)
        os.kill(int(marker.read_text()), signal.SIGKILL)
        with pytest.raises(JobFailedError, match="exited with -9"):
            await job.wait_until_finished(timeout=60)


@pytest.mark.parametrize(
    "processor", ["no_colon", "sandbox_work:missing", "no_such_module_x:f", "a:b:c"]
)
async def test_a_processor_that_cannot_be_imported_is_refused(processor: str) -> None:
    async with Runtime() as rt:
        with pytest.raises(InvalidOptionError) as info:
            rt.worker("q", processor, processes=1)
        assert info.value.field == "processor"


async def test_pausing_a_sandboxed_worker_is_refused_and_changes_nothing() -> None:
    async with Runtime() as rt:
        q = rt.queue("nopause")
        worker = rt.worker(q, "sandbox_work:spin", processes=1)
        with pytest.raises(InvalidOptionError, match="sandboxed worker cannot be paused"):
            await worker.pause()
        with pytest.raises(InvalidOptionError, match="sandboxed worker cannot be paused"):
            await worker.resume()
        assert not worker.paused
        pid = await (await q.add("x", 10)).wait_until_finished(timeout=60)
        assert pid != os.getpid()
