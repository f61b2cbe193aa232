"""Child process for `test_journal_kill`: adds jobs in a loop on a durable runtime and prints
each acknowledged job id (one flushed line each) until the parent SIGKILLs it.

Usage: ``python tests/journal_kill_child.py FOLDER RUN``
"""

from __future__ import annotations

import sys

import anyio

from actorq import Job, Runtime


async def main(folder: str, run: int) -> None:
    async with Runtime(path=folder, fsync="always") as rt:
        q = rt.queue("kill")

        async def work(job: Job) -> int:
            # Some finish at once, some stay active for a while (active when killed).
            if job.data["i"] % 3 == 0:
                await anyio.sleep(0.005)
            return int(job.data["i"])

        rt.worker(q, work, concurrency=4)
        out = sys.stdout
        out.write("ready\n")
        out.flush()

        async def adder(k: int) -> None:
            i = 0
            while True:
                job = await q.add("k", {"run": run, "adder": k, "i": i})
                # One write per line: a kill never leaves half an id behind as a whole line.
                out.write(f"{job.id}\n")
                out.flush()
                i += 1

        async with anyio.create_task_group() as tg:
            for k in range(4):
                tg.start_soon(adder, k)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
