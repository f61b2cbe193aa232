"""Other processes: W1 and W2 through a runtime host (``python -m benchmarks.remote``).

A host (``actorq serve``, in its own process, in memory or on a journal with
``fsync="always"``) and client processes on loopback:

* W1 end to end: 20,000 no-op jobs added with ``add_bulk`` by one client, processed by the
  workers of 1 or 3 client processes (concurrency 50 in all), until every one completed;
* W2: add → start latency of one job at a time, through a client;
* the host's CPU seconds per job (user + system, from /proc) over W1.

Options: ``--jobs N``, ``--reps N``, ``--durable``, ``--clients 1,3``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

import actorq
from actorq import Job

TOKEN = "benchmark-token-0123456789"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def host(durable: bool, scratch: str | None = None) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A runtime host in a process of its own; its address."""
    with tempfile.TemporaryDirectory(prefix="actorq-remote-", dir=scratch) as tmp:
        token_file = Path(tmp, "token")
        token_file.write_text(TOKEN)
        path = [str(Path(tmp, "journal"))] if durable else []
        args = ["serve", *path, "--listen", "127.0.0.1:0", "--token-file", str(token_file)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "actorq", *args], stderr=subprocess.PIPE, text=True
        )
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            if not line.startswith("actorq host on "):
                raise RuntimeError(f"the host did not start: {line!r}")
            yield line.split()[-1], proc
        finally:
            proc.terminate()
            proc.wait(30)
            if proc.stderr is not None:
                proc.stderr.close()


async def _worker_client(address: str, concurrency: int) -> None:
    """A client process's part of W1: process jobs of the queue until told to stop."""
    async with actorq.connect(f"actorq://{address}", token=TOKEN) as rt:

        async def noop(job: Job[Any, Any]) -> None:
            return None

        rt.worker(rt.queue("w1"), noop, concurrency=concurrency)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)  # the parent closes stdin: stop


def w1(address: str, jobs: int, clients: int, host_pid: int) -> dict[str, float]:
    """W1 with the workers of `clients` processes: this one (which adds) and the others."""
    command = [sys.executable, "-m", "benchmarks.remote", "--worker", address]
    others = [
        subprocess.Popen(
            [*command, "--concurrency", str(50 // clients)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(clients - 1)
    ]
    try:
        for proc in others:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        return anyio.run(_w1, address, jobs, 50 // clients, host_pid)
    finally:
        for proc in others:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(30)
            if proc.stdout is not None:
                proc.stdout.close()


async def _w1(address: str, jobs: int, concurrency: int, host_pid: int) -> dict[str, float]:
    async with actorq.connect(f"actorq://{address}", token=TOKEN) as rt:
        q = rt.queue("w1")

        async def noop(job: Job[Any, Any]) -> None:
            return None

        cpu0 = _cpu_seconds(host_pid)
        t0 = time.perf_counter()
        added = await q.add_bulk([{"name": "noop", "data": None} for _ in range(jobs)])
        t1 = time.perf_counter()
        rt.worker(q, noop, concurrency=concurrency)
        # Polled, as a user in another process would: a subscription to every event would
        # cost more than the jobs themselves.
        while (await q.counts())["completed"] < len(added):  # noqa: ASYNC110
            await anyio.sleep(0.002)
        t2 = time.perf_counter()
        cpu1 = _cpu_seconds(host_pid)
        await q.obliterate(force=True)
    return {
        "e2e_jobs_s": jobs / (t2 - t0),
        "add_jobs_s": jobs / (t1 - t0),
        "process_jobs_s": jobs / (t2 - t1),
        "host_cpu_us_per_job": (cpu1 - cpu0) / jobs * 1e6,
        "add_s": t1 - t0,
        "process_s": t2 - t1,
    }


async def w2(address: str, samples: int) -> dict[str, float]:
    async with actorq.connect(f"actorq://{address}", token=TOKEN) as rt:
        q = rt.queue("w2")
        started = [0.0]

        async def mark(job: Job[Any, Any]) -> None:
            started[0] = time.perf_counter()

        rt.worker(q, mark)
        latencies = []
        for i in range(samples + 50):
            t0 = time.perf_counter()
            job = await q.add("ping", None)
            await job.wait_until_finished()
            if i >= 50:
                latencies.append((started[0] - t0) * 1e6)
    latencies.sort()
    return {
        "p50_us": latencies[len(latencies) // 2],
        "p99_us": latencies[int(len(latencies) * 0.99)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--clients", default="1,3")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=50, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        anyio.run(_worker_client, args.worker, args.concurrency)
        return
    kind = "journal, fsync=always" if args.durable else "memory"
    with host(args.durable) as (address, proc):
        print(f"host ({kind}) on {address}")
        for clients in map(int, args.clients.split(",")):
            runs = [w1(address, args.jobs, clients, proc.pid) for _ in range(args.reps)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"W1 via {clients} client process(es): e2e {med['e2e_jobs_s']:,.0f} jobs/s "
                f"(add {med['add_jobs_s']:,.0f}/s, process {med['process_jobs_s']:,.0f}/s), "
                f"host CPU {med['host_cpu_us_per_job']:.1f} µs/job"
            )
        lat = anyio.run(w2, address, 500)
        print(f"W2 add→start over loopback: p50 {lat['p50_us']:.0f} µs, p99 {lat['p99_us']:.0f} µs")


if __name__ == "__main__":
    main()
