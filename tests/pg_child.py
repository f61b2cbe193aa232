"""Child process for tests/test_pg_takeover.py: a runtime on a journal in PostgreSQL that
adds jobs in a loop (a worker completes them) and prints each acknowledged one, until it is
killed or its journal stops it.

Usage: ``python tests/pg_child.py URL TAG``. Prints ``leading`` once it holds the lease,
then ``<job id> <TAG> <i>`` per acknowledged add (one flushed write per line), ``ran <job
id>`` as its processor starts a job, and on a stop of the runtime ``stopped <error type>:
<message>`` (exit status 3). Every fifth add is a job that depends on the add before it.
"""

from __future__ import annotations

import sys

import anyio

from actorq import DependsOn, Job, Runtime, RuntimeClosedError


async def main(url: str, tag: str) -> None:
    out = sys.stdout
    try:
        async with Runtime(url) as rt:
            q = rt.queue("q")

            async def work(job: Job) -> int:
                out.write(f"ran {job.id}\n")
                out.flush()
                if job.data["i"] % 7 == 0:  # some stay active a while (active when killed)
                    await anyio.sleep(0.05)
                return int(job.data["i"])

            rt.worker(q, work, concurrency=4)
            out.write("leading\n")
            out.flush()
            i = 0
            last: Job | None = None
            while True:
                data = {"tag": tag, "i": i}
                if i % 5 == 4 and last is not None:
                    job = await q.add("dep", data, depends_on=DependsOn(job_ids=[last.id]))
                else:
                    job = await q.add("k", data)
                last = job
                out.write(f"{job.id} {tag} {i}\n")
                out.flush()
                i += 1
                await anyio.sleep(0.002)
    except (RuntimeClosedError, Exception) as exc:
        cause = exc.__cause__ if isinstance(exc, RuntimeClosedError) and exc.__cause__ else exc
        out.write(f"stopped {type(cause).__name__}: {cause}\n")
        out.flush()
        sys.exit(3)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
