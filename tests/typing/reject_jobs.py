"""mypy --strict must reject each line marked ``# E: <error code>``, with that code."""

from __future__ import annotations

from typing import TypedDict

from actorq import Job, Queue, Runtime


class EmailData(TypedDict):
    to: str


class SentReceipt(TypedDict):
    sent_to: str


async def send(job: Job[EmailData, SentReceipt]) -> SentReceipt:
    return {"sent_to": job.data["to"]}


def sync_send(job: Job[EmailData, SentReceipt]) -> SentReceipt:
    return {"sent_to": job.data["to"]}


async def wrong_result(job: Job[EmailData, SentReceipt]) -> int:
    return 1


async def main() -> None:
    async with Runtime() as rt:
        q = rt.queue("emails")
        await q.add("x", priorty=5)  # E: call-arg
        await q.add("x", priority="high")  # E: arg-type
        await q.add("x", delay="5s")  # E: arg-type
        await q.add("x", tags="one")  # E: arg-type
        await q.add("x", remove_on_complete={"cout": 3})  # E: arg-type
        await q.add_bulk([{"name": "a", "atempts": 2}])  # E: typeddict-unknown-key
        await q.add_bulk([{"data": 1}])  # E: typeddict-item
        await q.get_jobs("finished")  # E: arg-type
        await q.get_jobs(tag_mode="some")  # E: arg-type
        await q.clean(state="done")  # E: arg-type
        rt.worker(q, sync_send)  # E: arg-type

        emails: Queue[EmailData, SentReceipt] = rt.queue("emails")
        await emails.add("w", {"too": "a@b"})  # E: typeddict-item, typeddict-unknown-key
        rt.worker(emails, wrong_result)  # E: arg-type
        job = await emails.add("welcome", {"to": "ada@example.com"})
        receipt: int = await job.wait_until_finished()  # E: assignment
        job.data["subject"]  # E: typeddict-item


rt = Runtime()


@rt.task("emails")
async def typed_task(job: Job[EmailData, SentReceipt]) -> SentReceipt:
    return {"sent_to": job.data["to"]}


@rt.task("emails")  # E: arg-type
def sync_task(job: Job[EmailData, SentReceipt]) -> SentReceipt:
    return {"sent_to": job.data["to"]}


async def tasks() -> None:
    await typed_task.add({"too": "a@b"})  # E: typeddict-item, typeddict-unknown-key
    await typed_task.add({"to": "a@b"}, priorty=1)  # E: call-arg
    rt.worker("emails", {"send": sync_send})  # E: arg-type
