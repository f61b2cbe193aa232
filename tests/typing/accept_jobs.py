"""mypy --strict must accept this file: generic jobs, typed processors, typed options."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict, assert_type

from actorq import Backoff, DependsOn, Job, JobState, Queue, Runtime, Worker


class EmailData(TypedDict):
    to: str


class SentReceipt(TypedDict):
    sent_to: str


async def send(job: Job[EmailData, SentReceipt]) -> SentReceipt:
    assert_type(job.data, EmailData)
    return {"sent_to": job.data["to"]}


def send_sync(job: Job[EmailData, SentReceipt]) -> SentReceipt:
    return {"sent_to": job.data["to"]}


async def untyped_processor(job: Job) -> Any:
    assert_type(job, Job[Any, Any])
    return job.data


async def main() -> None:
    async with Runtime() as rt:
        emails: Queue[EmailData, SentReceipt] = rt.queue("emails")
        worker = rt.worker(emails, send, concurrency=10)
        assert_type(worker, Worker[EmailData, SentReceipt])
        rt.worker("emails", send_sync, run_in_thread=True)
        job = await emails.add(
            "welcome",
            {"to": "ada@example.com"},
            priority=5,
            attempts=3,
            backoff=Backoff.exponential(1.0, jitter=0.2),
            delay=None,
            timeout=2.5,
            tags=["a", "b"],
            remove_on_complete={"count": 10, "age": 60.0},
            remove_on_fail=True,
            depends_on=DependsOn(job_ids=[1]),
            fail_parent_on_failure=False,
        )
        assert_type(job, Job[EmailData, SentReceipt])
        assert_type(await job.wait_until_finished(), SentReceipt)
        assert_type(job.return_value, SentReceipt | None)
        later = await emails.add("later", {"to": "b@example.com"}, run_at=datetime.now())
        await emails.add("child", {"to": "c@example.com"}, parent=later, lifo=True)

        # an untyped queue stays Any everywhere, as before
        anything = rt.queue("anything")
        rt.worker(anything, untyped_processor)
        other = await anything.add("x")
        assert_type(other.data, Any)
        assert_type(await other.wait_until_finished(), Any)
        await anything.add_bulk([{"name": "a"}, {"name": "b", "data": 1, "priority": 2}])

        manual = rt.worker(emails)
        fetched = await manual.get_next_job("token")
        if fetched is not None:
            assert_type(fetched, Job[EmailData, SentReceipt])
            await fetched.move_to_completed({"sent_to": "x"}, "token")

        await emails.get_jobs("waiting")
        await emails.get_jobs(["waiting-children", JobState.FAILED], tag_mode="any")
        await emails.clean(0, state="failed")
