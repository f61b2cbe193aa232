"""A small world of queues for the dashboard's tests: every state a page shows, a flow, a
dependency chain, a tag barrier, a job scheduler under a global concurrency, a paused queue
and a hostile job name."""

from __future__ import annotations

import contextlib
from typing import Any

from actorq import DependsOn, FlowJob, FlowProducer, Job, JobFailedError, Runtime

XSS = "<script>alert(1)</script>"
REASON = "image too large: 9000px"


async def populate(rt: Runtime) -> dict[str, int]:
    """Fill `rt` and return the ids the tests look at. No worker is left running, so every
    job stays where it is until a test moves it."""
    mail, images = rt.queue("mail"), rt.queue("images")

    async def send(job: Job) -> str:
        return f"sent to {job.data['to']}"

    async def resize(job: Job) -> None:
        raise ValueError(REASON)

    sent = [await mail.add("welcome", {"to": f"user{i}@example.com"}) for i in range(3)]
    worker = rt.worker("mail", send)
    for job in sent:
        await job.wait_until_finished()
    await worker.close()
    await mail.add("digest", {"to": "all"}, tags=["weekly"])
    await mail.add("digest", {"to": "vip"}, tags=["weekly", "vip"])
    reminder = await mail.add("reminder", {"to": "late@example.com"}, delay=3600)

    failed = await images.add("resize", {"image": "cat.png"}, attempts=1)
    worker = rt.worker("images", resize)
    with contextlib.suppress(JobFailedError):
        await failed.wait_until_finished()
    await worker.close()

    flow = await FlowProducer(rt).add(
        FlowJob(
            "report",
            "reports",
            {"month": "2026-11"},
            children=[FlowJob("chart", "reports"), FlowJob("table", "reports")],
        )
    )
    etl = rt.queue("etl")
    extract = await etl.add("extract")
    transform = await etl.add("transform", depends_on=DependsOn(job_ids=[extract.id]))
    load = await etl.add("load", depends_on=DependsOn(job_ids=[transform.id]))
    imports = rt.queue("imports")
    holder = await imports.add("import", {"file": "eu.csv"}, tags=["import"])
    summary = await imports.add("summary", depends_on=DependsOn(tags=["import"]))

    nightly = rt.queue("nightly")
    await nightly.set_global_concurrency(2)
    await nightly.upsert_job_scheduler("nightly-report", every=86_400, template={"name": "report"})
    hostile = await rt.queue("web").add(XSS, {"html": "<img src=x onerror=alert(2)>"})
    db = rt.queue("db")
    await db.add("vacuum")
    await db.pause()
    out: dict[str, Any] = {
        "failed": failed.id,
        "completed": sent[0].id,
        "delayed": reminder.id,
        "flow_root": flow.job.id,
        "flow_child": flow.children[0].job.id,
        "extract": extract.id,
        "transform": transform.id,
        "load": load.id,
        "holder": holder.id,
        "summary": summary.id,
        "xss": hostile.id,
    }
    return out


#: The counts `populate` leaves, per queue (states not listed are zero).
EXPECTED = {
    "mail": {"completed": 3, "waiting": 2, "delayed": 1},
    "images": {"failed": 1},
    "reports": {"waiting-children": 1, "waiting": 2},
    "etl": {"waiting": 1, "blocked": 2},
    "imports": {"waiting": 1, "blocked": 1},
    "nightly": {"delayed": 1},
    "web": {"waiting": 1},
    "db": {"waiting": 1},
}
