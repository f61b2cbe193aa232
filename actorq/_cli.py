"""The `actorq` command line (also ``python -m actorq``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import anyio

from ._core import JobState
from ._exceptions import UnrecoverableError
from ._job import Job
from ._journal_cli import add_journal_commands, run_journal_command
from ._runtime import Runtime
from .clock import VirtualClock

DAY = 24 * 3600.0


async def _demo(users: int) -> int:
    """A drip campaign with step jobs and retries, in virtual time, with a summary."""
    clock = VirtualClock()
    started = time.perf_counter()
    async with Runtime(clock=clock, seed=7) as rt:
        drip = rt.queue("drip")
        mail = rt.queue("mail")
        sent: list[tuple[float, str]] = []

        async def send_mail(job: Job) -> str:
            # One in seven deliveries fails its first attempt: retries take care of it.
            if job.data["user"] % 7 == 3 and job.attempts_made == 0:
                raise ConnectionError("smtp timeout")
            if job.data["template"] == "bogus":
                raise UnrecoverableError("no such template")
            sent.append((clock.now(), job.data["template"]))
            return f"sent {job.data['template']} to user {job.data['user']}"

        async def campaign(job: Job) -> str:
            step = job.data.get("step", "welcome")
            user = job.data["user"]
            if step == "welcome":
                await mail.add(
                    "mail", {"user": user, "template": "welcome"}, attempts=3, backoff=60
                )
                await job.move_to_delayed(clock.now() + DAY, next_step="check")
            if step == "check":
                await mail.add("mail", {"user": user, "template": "tips"}, attempts=3, backoff=60)
                await job.move_to_delayed(clock.now() + 2 * DAY, next_step="follow_up")
            await mail.add("mail", {"user": user, "template": "follow-up"}, attempts=3, backoff=60)
            return "campaign done"

        rt.worker(drip, campaign, concurrency=20)
        rt.worker(mail, send_mail, concurrency=20)
        jobs = await drip.add_bulk(
            [{"name": "campaign", "data": {"user": u}} for u in range(users)]
        )
        print(f"actorq demo: a 3-day drip campaign for {users} users, in virtual time")
        for i, job in enumerate(jobs, 1):
            await job.wait_until_finished()
            if i % max(1, users // 4) == 0 or i == users:
                print(
                    f"  campaigns finished: {i:>4}/{users}  (virtual day {clock.now() / DAY:.1f})"
                )
        while (await mail.counts())["completed"] < 3 * users:
            await clock.advance(60)
        drip_counts, mail_counts = await drip.counts(), await mail.counts()
    elapsed = time.perf_counter() - started
    print()
    print(f"{'queue':<8}" + "".join(f"{s.value:>18}" for s in JobState))
    for name, counts in (("drip", drip_counts), ("mail", mail_counts)):
        print(f"{name:<8}" + "".join(f"{counts[s.value]:>18}" for s in JobState))
    print()
    days = clock.now() / DAY
    print(f"{len(sent)} mails over {days:.1f} virtual days in {elapsed:.2f} s of real time")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="actorq", description="actorq: an in-process job queue")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a small workload and print a summary")
    demo.add_argument("--users", type=int, default=200, help="campaigns to run (default 200)")
    add_journal_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return anyio.run(_demo, args.users)
    code = run_journal_command(args)
    if code is not None:
        return code
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
