"""Child process for tests/test_pg_takeover.py and tests/test_pg_standby.py: a runtime on a
journal in PostgreSQL that adds jobs in a loop (a worker completes them) and prints each
acknowledged one, until it is killed or its journal stops it.

Usage: ``python tests/pg_child.py URL TAG [listen] [idle]``. Prints ``leading`` once it holds
the lease, then ``<job id> <TAG> <i> <t0> <t>`` per acknowledged add, called at t0 and
returned at t (one flushed write per line), ``ran <job id> <t>`` as its processor starts a
job and ``done <job id> <t>`` as its run returns, and on a stop of the runtime ``stopped
<error type>: <message>`` (exit status 3); ``t`` is `time.monotonic()`, one clock for every
process of the machine. Every fifth add is a job that depends on the add before it, every
third is tagged ``imp``, and every tenth is a tag-drain barrier: it waits until no
unfinished job is tagged ``imp``. Its processors hold 2-second locks (timed on a journal in
PostgreSQL): a job active when a leader dies stalls in the next leader 2 s after the last
renewal, and runs again. With ``listen`` the runtime listens on a port of 127.0.0.1 (where
standbys reach it); with ``idle`` it runs no worker.
A standby (``actorq_standby=on`` in the URL) prints ``standby`` as it enters, adds and
processes through the leader, prints ``applied <seq>`` every 100 adds (how far its tail
has read the log), ``leading`` once it took over, and ``lost <i>`` for an add whose
connection broke (it may have been applied; the next add takes the next i).
"""

from __future__ import annotations

import sys
import time

import anyio

from actorq import ConnectionLostError, DependsOn, Job, Runtime, RuntimeClosedError


async def main(url: str, tag: str, options: list[str]) -> None:
    out = sys.stdout
    try:
        async with Runtime(url, listen="127.0.0.1:0" if "listen" in options else None) as rt:
            q = rt.queue("q")

            async def work(job: Job) -> int:
                out.write(f"ran {job.id} {time.monotonic()!r}\n")
                out.flush()
                if job.data["i"] % 7 == 0:  # some stay active a while (active when killed)
                    await anyio.sleep(0.05)
                out.write(f"done {job.id} {time.monotonic()!r}\n")
                out.flush()
                return int(job.data["i"])

            if "idle" not in options:
                rt.worker(q, work, concurrency=4, lock_duration=2)
            said = None
            i = 0
            last: Job | None = None
            while True:
                if said is not rt.leading:
                    said = rt.leading
                    out.write("leading\n" if said else "standby\n")
                    out.flush()
                if rt._standby is not None and not said and i % 100 == 0:
                    out.write(f"applied {rt._standby.tail.applied or 0}\n")
                    out.flush()
                data = {"tag": tag, "i": i}
                called = time.monotonic()
                try:
                    if i % 5 == 4 and last is not None:
                        job = await q.add("dep", data, depends_on=DependsOn(job_ids=[last.id]))
                    elif i % 10 == 7:
                        job = await q.add("drain", data, depends_on=DependsOn(tags=["imp"]))
                    else:
                        job = await q.add("k", data, tags=["imp"] if i % 3 == 0 else [])
                except ConnectionLostError:
                    out.write(f"lost {i}\n")
                    out.flush()
                    i += 1
                    last = None
                    continue
                last = job
                out.write(f"{job.id} {tag} {i} {called!r} {time.monotonic()!r}\n")
                out.flush()
                i += 1
                await anyio.sleep(0.002)
    except (RuntimeClosedError, Exception) as exc:
        cause = exc.__cause__ if isinstance(exc, RuntimeClosedError) and exc.__cause__ else exc
        out.write(f"stopped {type(cause).__name__}: {cause}\n")
        out.flush()
        sys.exit(3)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3:])
