"""`actorq demo`: a small, realistic workload on a journal, in virtual time.

Each run is one two-day "session" on the journal in ``--path`` (default
``actorq-demo-data/``): a new cohort starts a three-step drip campaign (welcome → one day →
tips → two days → follow-up), a flow fans an image batch out to resize jobs and back in to a
report, an ETL chain runs extract → transform → load on dependencies, and a tag barrier holds
a vacuum until the schema migrations have drained. The session ends with campaigns still
sleeping: the next run replays them from the journal, says what it recovered, and carries on
(the previous cohort's follow-ups go out in the new session).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import anyio

from ._core import JobState
from ._flow import FlowProducer
from ._job import Job
from ._relations import DependsOn, FlowJob, batch_ref
from ._runtime import Runtime
from ._typing import BulkJob
from .clock import VirtualClock

HOUR = 3600.0
DAY = 24 * HOUR
SESSION = 2 * DAY
DEFAULT_PATH = "actorq-demo-data"
STATE_FILE = "demo-state.json"
QUEUES = ("drip", "mail", "images", "reports", "etl", "db", "session")


def _state(folder: Path) -> dict[str, Any]:
    """What earlier runs left: how many there were and where virtual time stopped."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        state: dict[str, Any] = json.loads((folder / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {"runs": 0, "now": 0.0}
    return state


def _save_state(folder: Path, state: dict[str, Any]) -> None:
    (folder / STATE_FILE).write_text(json.dumps(state))


def _table(counts: dict[str, dict[str, int]], out: TextIO) -> None:
    """Counts by state, one row per queue, only the states something is in."""
    states = [s.value for s in JobState if any(c.get(s.value) for c in counts.values())]
    widths = [max(len(s), 6) for s in states]
    print(
        f"  {'queue':<9}" + "".join(f" {s:>{w}}" for s, w in zip(states, widths, strict=True)),
        file=out,
    )
    for name, c in counts.items():
        cells = "".join(f" {c.get(s, 0):>{w}}" for s, w in zip(states, widths, strict=True))
        print(f"  {name:<9}{cells}", file=out)


def _day(clock: VirtualClock) -> str:
    return f"day {clock.now() / DAY:4.1f}"


async def run_demo(
    path: str | os.PathLike[str] = DEFAULT_PATH, users: int = 50, out: TextIO | None = None
) -> dict[str, Any]:
    """Run one session on the journal in `path`; print as it goes; return what happened."""
    out = out or sys.stdout
    folder = Path(path)
    state = _state(folder)
    run = int(state["runs"]) + 1
    clock = VirtualClock(start=float(state["now"]))
    started = time.perf_counter()
    stats = {"mails": 0, "retries": 0}

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    async with Runtime(path=folder / "journal", clock=clock, seed=7, fsync="interval") as rt:
        recovered = {q: c for q, c in (await rt.counts()).items() if any(c.values())}
        replayed = sum(sum(c.values()) for c in recovered.values())
        say(f"actorq demo, run {run}: journal in {folder}/journal, virtual time from {_day(clock)}")
        if replayed:
            say(f"recovered {replayed} jobs from the journal of earlier runs:")
            _table(recovered, out)
            sleeping = recovered.get("drip", {}).get("delayed", 0)
            if sleeping:
                say(f"  {sleeping} campaigns were sleeping between steps: they resume now")
        else:
            say("a new journal: nothing to recover (run me again to see the replay)")
        say("")

        drip, mail = rt.queue("drip"), rt.queue("mail")
        images, reports, etl, db = (rt.queue(n) for n in ("images", "reports", "etl", "db"))
        events: list[str] = []
        resumed = 0

        async def send_mail(job: Job) -> str:
            # One delivery in seven fails its first attempt: the retry takes care of it.
            if job.data["user"] % 7 == 3 and job.attempts_made == 0:
                stats["retries"] += 1
                raise ConnectionError("smtp timeout")
            stats["mails"] += 1
            return f"{job.data['template']} → user {job.data['user']}"

        async def campaign(job: Job) -> str:
            nonlocal resumed
            step, user, cohort = (
                job.data.get("step", "welcome"),
                job.data["user"],
                job.data["cohort"],
            )

            async def mail_out(template: str) -> None:
                key = f"{cohort}-{user}-{template}"  # a replayed step never mails twice
                data = {"user": user, "template": template}
                await mail.add("mail", data, attempts=3, backoff=60, idempotency_key=key)

            if step == "welcome":
                await mail_out("welcome")
                await job.move_to_delayed(clock.now() + DAY, next_step="tips")
            if step == "tips":
                await mail_out("tips")
                await job.move_to_delayed(clock.now() + 2 * DAY, next_step="follow_up")
            await mail_out("follow-up")
            if cohort < run:
                resumed += 1
            return "done"

        async def resize(job: Job) -> int:
            await clock.sleep(30)  # a slow image service
            return int(job.data["kb"]) // 4

        async def report(job: Job) -> dict[str, Any]:
            values = await job.get_children_values()
            events.append(f"flow: report over {len(values)} resized images at {_day(clock)}")
            # Children are keyed by int id: convert keys before returning them as JSON.
            return {"images": len(values), "kb": sum(values.values())}

        async def etl_step(job: Job) -> str:
            await clock.sleep(10 * 60)
            events.append(f"chain: {job.name} at +{(clock.now() - t0) / 60:.0f} min")
            return job.name

        async def db_job(job: Job) -> str:
            await clock.sleep(10 * 60)
            if job.name == "vacuum":
                events.append(
                    f"barrier: vacuum ran at +{(clock.now() - t0) / 60:.0f} min, "
                    "after the migrations drained"
                )
            return job.name

        t0 = clock.now()

        async def session_end(job: Job) -> float:
            return clock.now()

        rt.worker(drip, campaign, concurrency=20)
        rt.worker(mail, send_mail, concurrency=20)
        rt.worker(images, resize, concurrency=4)
        rt.worker(reports, report)
        rt.worker(etl, etl_step)
        rt.worker(db, db_job, concurrency=2)
        rt.worker("session", session_end)

        await drip.add_bulk(
            [{"name": "campaign", "data": {"user": u, "cohort": run}} for u in range(users)]
        )
        flow = await FlowProducer(rt).add(
            FlowJob(
                "report",
                "reports",
                {"batch": run},
                children=[FlowJob("resize", "images", {"kb": 400 + 40 * i}) for i in range(8)],
            )
        )
        chain = await etl.add_bulk(
            [
                {"name": "extract"},
                {"name": "transform", "depends_on": DependsOn(job_ids=[batch_ref(0)])},
                {"name": "load", "depends_on": DependsOn(job_ids=[batch_ref(1)])},
            ]
        )
        migrations: list[BulkJob] = [
            {"name": f"migrate-{i}", "tags": ["db", "schema"]} for i in range(3)
        ]
        barrier = await db.add_bulk(
            [*migrations, {"name": "vacuum", "depends_on": DependsOn(tags=["db"])}]
        )
        end = await rt.queue("session").add("end-of-session", delay=SESSION)
        say(
            f"run {run}: {users} new campaigns, 1 flow (8 resize jobs → 1 report),\n"
            "  1 chain (extract → transform → load), 3 migrations + 1 vacuum behind a tag barrier"
        )

        async def monitor() -> None:
            while True:
                await clock.sleep(12 * HOUR)
                c = await rt.counts()
                done = {q: c.get(q, {}).get("completed", 0) for q in ("drip", "mail")}
                sleeping = c.get("drip", {}).get("delayed", 0)
                say(
                    f"  {_day(clock)}  mails sent {stats['mails']:>4} (retries "
                    f"{stats['retries']:>2})  campaigns finished {done['drip']:>4}, "
                    f"sleeping {sleeping:>4}"
                )

        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor)
            await end.wait_until_finished()
            for job in (flow.job, *chain, *barrier):
                await job.wait_until_finished()
            tg.cancel_scope.cancel()
        final = {q: c for q, c in (await rt.counts()).items() if any(c.values())}
        now = clock.now()
    elapsed = time.perf_counter() - started
    _save_state(folder, {"runs": run, "now": now})
    say("")
    for line in events:
        say(f"  {line}")
    if resumed:
        say(f"  {resumed} campaigns from earlier runs finished their last step in this run")
    say("")
    say(f"summary after run {run} (journal: {sum(sum(c.values()) for c in final.values())} jobs):")
    _table(final, out)
    say(
        f"\n{stats['mails']} mails sent, {stats['retries']} retried, over "
        f"{(now - float(state['now'])) / DAY:.1f} virtual days in {elapsed:.2f} s of real time"
    )
    say(f"run `actorq demo --path {folder}` again to replay this journal and carry on")
    say(f"look into it with `actorq stats {folder / 'journal'}` (or show, dump, verify)")
    return {
        "run": run,
        "replayed": replayed,
        "recovered": recovered,
        "final": final,
        "resumed": resumed,
        "mails": stats["mails"],
        "elapsed": elapsed,
        "now": now,
    }


def main(path: str = DEFAULT_PATH, users: int = 50) -> int:
    anyio.run(run_demo, path, users)
    return 0


__all__ = ["DEFAULT_PATH", "main", "run_demo"]
