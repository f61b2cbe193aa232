"""Task registry: one processor per job name on a worker (a mapping, or `@rt.task` tasks)."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import pytest
from runtimes import MakeRuntime

import actorq
from actorq import (
    InvalidOptionError,
    Job,
    JobFailedError,
    JobState,
    Runtime,
    Task,
    VirtualClock,
)


async def test_a_mapping_runs_each_job_names_own_processor(make_runtime: MakeRuntime) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("emails")

        async def send(job: Job) -> str:
            return f"sent to {job.data['to']}"

        async def report(job: Job) -> int:
            return len(job.data)

        rt.worker(q, {"send": send, "report": report}, concurrency=4)
        sent = await q.add("send", {"to": "ada"})
        counted = await q.add("report", [1, 2, 3])
        with anyio.fail_after(5):
            assert await sent.wait_until_finished() == "sent to ada"
            assert await counted.wait_until_finished() == 3


async def test_an_unknown_job_name_fails_for_good_with_a_clear_reason(
    caplog: pytest.LogCaptureFixture, make_runtime: MakeRuntime
) -> None:
    async with make_runtime(clock=VirtualClock()) as rt:
        q = rt.queue("emails")

        async def send(job: Job) -> None:
            return None

        rt.worker(q, {"send": send})
        job = await q.add("sned", attempts=5)
        unknown = pytest.raises(JobFailedError, match="no processor for job name 'sned'")
        with caplog.at_level(logging.ERROR, "actorq"), anyio.fail_after(5), unknown:
            await job.wait_until_finished()
        assert job.state is JobState.FAILED
        assert job.attempts_made == 1  # not retried: every attempt would meet the same table
        assert "it handles 'send'" in (job.failed_reason or "")
        assert any("sned" in r.getMessage() for r in caplog.records)  # a final failure: ERROR


async def test_rt_task_registers_a_function_and_adds_its_jobs(make_runtime: MakeRuntime) -> None:
    rt = make_runtime(clock=VirtualClock())  # tasks can be declared before the runtime starts

    @rt.task("emails")
    async def send(job: Job[dict[str, str], str]) -> str:
        return f"sent to {job.data['to']}"

    @rt.task("emails", name="weekly-report")
    async def report(job: Job[None, int]) -> int:
        return 42

    assert isinstance(send, Task)
    assert (send.name, send.queue, report.name) == ("send", "emails", "weekly-report")
    async with rt:
        rt.worker("emails", [send, report])
        job = await send.add({"to": "ada"}, priority=3)
        assert (job.name, job.queue, job.priority) == ("send", "emails", 3)
        weekly = await report.add()
        with anyio.fail_after(5):
            assert await job.wait_until_finished() == "sent to ada"
            assert await weekly.wait_until_finished() == 42
        assert await send(job) == "sent to ada"  # still the function, for unit tests
        with pytest.raises(InvalidOptionError, match="priorty"):
            await send.add({"to": "x"}, priorty=1)  # type: ignore[call-arg]


async def test_a_registry_of_sync_functions_runs_in_threads(make_runtime: MakeRuntime) -> None:
    async with make_runtime() as rt:
        q = rt.queue("cpu")

        def square(job: Job) -> int:
            time.sleep(0)  # a plain function: it runs in a worker thread
            return int(job.data) ** 2

        rt.worker(q, {"square": square}, run_in_thread=True)
        job = await q.add("square", 7)
        with anyio.fail_after(10):
            assert await job.wait_until_finished() == 49


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda rt, f, g: {}, "at least one job name"),
        (lambda rt, f, g: {"": f}, "non-empty string"),
        (lambda rt, f, g: {"a": g}, "must be an async function"),
        (lambda rt, f, g: [f], "holds Tasks"),
        (lambda rt, f, g: [rt.task("other")(f)], "task of queue 'other'"),
        (lambda rt, f, g: [rt.task("q")(f), rt.task("q")(f)], "two processors for one job name"),
    ],
)
async def test_a_bad_registry_is_refused_when_the_worker_starts(
    make_runtime: MakeRuntime, make: Any, match: str
) -> None:
    async def f(job: Job) -> None:
        return None

    def g(job: Job) -> None:
        return None

    async with make_runtime() as rt:
        with pytest.raises(InvalidOptionError, match=match):
            rt.worker("q", make(rt, f, g))
        assert rt._workers == {}


@pytest.mark.parametrize("make", [Runtime, lambda: actorq.connect("actorq://127.0.0.1:1")])
def test_rt_task_refuses_a_sync_function(make: Any) -> None:
    rt = make()  # a runtime or a client not started: the check needs no engine

    def sync(job: Job) -> None:
        return None

    with pytest.raises(InvalidOptionError, match="must be an async function"):
        rt.task("q")(sync)  # type: ignore[arg-type]
