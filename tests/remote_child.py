"""Child processes for tests/test_remote_processes.py: a runtime host, and its clients.

``python tests/remote_child.py host BACKEND FOLDER ADDRESS TOKEN``
    a runtime on the journal FOLDER listening on ADDRESS; prints ``ready`` once it serves.
``python tests/remote_child.py work BACKEND ADDRESS TOKEN NAME JOBS``
    a client that adds JOBS jobs (idempotency keys NAME-i, retried after a lost connection)
    and processes jobs of the queue, printing ``ran ID`` before each job's end and ``acked
    ID`` for each add the host acknowledged; prints ``done`` once every job of the queue has
    completed.
``python tests/remote_child.py hang BACKEND ADDRESS TOKEN``
    a client whose processor prints ``started ID`` and never ends.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio

import actorq
from actorq import ConnectionLostError, Job, Runtime


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def host(folder: str, address: str, token: str) -> None:
    async with Runtime(folder, listen=address, token=token, fsync="always"):
        say("ready")
        await anyio.sleep_forever()


async def add(q: Any, key: str, data: int) -> Job[Any, Any]:
    """An add that survives a host restart: retried under its idempotency key, so a retry
    of an add the host did apply returns that job instead of adding another."""
    while True:
        try:
            return await q.add("w", data, idempotency_key=key)
        except ConnectionLostError:
            await anyio.sleep(0.05)


async def work(address: str, token: str, name: str, jobs: int) -> None:
    async with actorq.connect(f"actorq://{address}", token=token) as rt:
        say("connected")
        q = rt.queue("work")

        async def run(job: Job[int, int]) -> int:
            say(f"ran {job.id}")
            await anyio.sleep(0.001)
            return job.data

        rt.worker(q, run, concurrency=8, lock_duration=2.0)
        for i in range(jobs):
            job = await add(q, f"{name}-{i}", i)
            say(f"acked {job.id}")
        while True:
            try:
                counts = await q.counts()
            except ConnectionLostError:
                continue
            if counts["waiting"] == counts["active"] == counts["delayed"] == 0:
                break
            await anyio.sleep(0.05)
        say("done")
        await anyio.sleep_forever()  # until the parent ends it: its worker keeps serving


async def hang(address: str, token: str) -> None:
    async with actorq.connect(f"actorq://{address}", token=token) as rt:

        async def forever(job: Job[Any, Any]) -> None:
            say(f"started {job.id}")
            await anyio.sleep_forever()

        rt.worker("work", forever, lock_duration=1.0)
        await anyio.sleep_forever()


if __name__ == "__main__":
    role, backend, *args = sys.argv[1:]
    if role == "host":
        anyio.run(host, args[0], args[1], args[2], backend=backend)
    elif role == "work":
        anyio.run(work, args[0], args[1], args[2], int(args[3]), backend=backend)
    else:
        anyio.run(hang, args[0], args[1], backend=backend)
