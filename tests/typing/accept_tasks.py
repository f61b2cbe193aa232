"""mypy --strict must accept this file: the task registry, typed from the functions."""

from __future__ import annotations

from typing import TypedDict, assert_type

from actorq import Job, Runtime, Task, Worker


class EmailData(TypedDict):
    to: str


rt = Runtime()


@rt.task("emails")
async def send(job: Job[EmailData, str]) -> str:
    return job.data["to"]


@rt.task("emails", name="weekly-report")
async def report(job: Job[None, int]) -> int:
    return 1


async def by_name(job: Job) -> None:
    return None


async def main() -> None:
    assert_type(send, Task[EmailData, str])
    async with rt:
        assert_type(rt.worker("emails", [send, report]), Worker)
        rt.worker("other", {"a": by_name, "b": by_name})
        job = await send.add({"to": "ada@example.com"}, priority=2, attempts=3)
        assert_type(job, Job[EmailData, str])
        assert_type(await job.wait_until_finished(), str)
        assert_type(await report.add(), Job[None, int])
