"""The journal in PostgreSQL: ``python -m benchmarks.postgresql [--url URL] [--reps N]``.

* W1 (20,000 no-op jobs: one add_bulk, then a worker at concurrency 50), end to end, in
  memory, on the file journal under ``always`` and on PostgreSQL under ``always`` and
  ``interval``: jobs/s;
* W1 one add at a time (2,000 adds from 50 tasks, processed as they come) on PostgreSQL
  ``always``: jobs/s, the durable add path;
* W2 (one job at a time, add → completed) and W3 (1,000 jobs due 0–200 ms ahead, how late
  each starts) on PostgreSQL ``always``;
* the log's rows and bytes per job after W1 (payload bytes, and on-disk bytes of the tables);
* takeover: a leader (ttl 2 s) SIGKILLed, the time until a candidate leads (has replayed
  the journal and serves), on a fresh journal and on one holding 50,000 jobs: cold (a
  candidate waiting with ``actorq_wait``) and warm (a standby, ``actorq_standby=on``, that
  tailed the log), alternating. ``--takeover JOBS`` prints only these, for JOBS jobs.

``--notify-ab PAIRS`` instead measures what the leader's NOTIFY after each batch (the
standbys' wake-up) costs: W1 and W2 on PostgreSQL ``always`` with the append statement as
shipped and without its ``pg_notify``, alternating the order pair by pair; each variant's
median and the per-pair ratios (above 1: the NOTIFY costs that much).

Without ``--url`` it starts a throwaway cluster as the tests do (tests/pg_cluster.py needs
PostgreSQL's server binaries).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import psycopg

from actorq import Job, Runtime
from actorq import _journal_pg_schema as schema

TESTS = Path(__file__).resolve().parent.parent / "tests"
W1_JOBS = 20_000
W1_CONCURRENCY = 50
ADDS = 2_000
W2_SAMPLES = 300
W3_JOBS = 1_000
W3_MAX_DELAY = 0.2
#: Completed jobs in the journal a taking-over leader replays, for the second takeover figure.
TAKEOVER_HISTORY = 50_000


def _fresh(admin_url: str, name: str, template: str | None = None) -> str:
    """A new database (a copy of `template`, when given), after a checkpoint: each run
    starts with no dirty buffers of the runs before it to flush."""
    copy = f" TEMPLATE {template}" if template else ""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")  # type: ignore[arg-type]
        conn.execute(f"CREATE DATABASE {name}{copy}")  # type: ignore[arg-type]
        with contextlib.suppress(psycopg.Error):  # needs a superuser or pg_checkpoint
            conn.execute("CHECKPOINT")
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def _w1(path: str | None, fsync: str) -> float:
    done = anyio.Event()
    finished = 0

    async def noop(job: Job) -> None:
        nonlocal finished
        finished += 1
        if finished == W1_JOBS:
            done.set()

    async with Runtime(path, fsync=fsync) as rt:
        q = rt.queue("w1")
        t0 = time.perf_counter()
        await q.add_bulk([{"name": "noop", "data": None} for _ in range(W1_JOBS)])
        rt.worker(q, noop, concurrency=W1_CONCURRENCY)
        await done.wait()
        return W1_JOBS / (time.perf_counter() - t0)


async def _adds(url: str) -> float:
    done = anyio.Event()
    finished = 0

    async def noop(job: Job) -> None:
        nonlocal finished
        finished += 1
        if finished == ADDS:
            done.set()

    async with Runtime(url) as rt:
        q = rt.queue("adds")
        rt.worker(q, noop, concurrency=W1_CONCURRENCY)
        t0 = time.perf_counter()

        async def adder(k: int) -> None:
            for i in range(ADDS // W1_CONCURRENCY):
                await q.add("a", {"k": k, "i": i})

        async with anyio.create_task_group() as tg:
            for k in range(W1_CONCURRENCY):
                tg.start_soon(adder, k)
        await done.wait()
        return ADDS / (time.perf_counter() - t0)


async def _w2(url: str, fsync: str) -> dict[str, float]:
    samples: list[float] = []

    async def noop(job: Job) -> None:
        return None

    async with Runtime(url, fsync=fsync) as rt:
        q = rt.queue("w2")
        rt.worker(q, noop, concurrency=1)
        for i in range(W2_SAMPLES + 20):
            t0 = time.perf_counter()
            job = await q.add("ping", None)
            await job.wait_until_finished()
            if i >= 20:
                samples.append(time.perf_counter() - t0)
    samples.sort()
    return {
        "p50_us": statistics.median(samples) * 1e6,
        "p99_us": samples[int(len(samples) * 0.99) - 1] * 1e6,
    }


async def _w3(url: str) -> dict[str, float]:
    rng = random.Random(7)
    delays = [rng.uniform(0.0, W3_MAX_DELAY) for _ in range(W3_JOBS)]
    lateness: list[float] = []
    done = anyio.Event()

    async def process(job: Job) -> None:
        lateness.append(time.time() - (job.created_at + job.data["delay"]))
        if len(lateness) == W3_JOBS:
            done.set()

    async with Runtime(url) as rt:
        q = rt.queue("w3")
        rt.worker(q, process, concurrency=W1_CONCURRENCY)
        await q.add_bulk([{"name": "later", "data": {"delay": d}, "delay": d} for d in delays])
        await done.wait()
    lateness.sort()
    return {
        "p50_ms": statistics.median(lateness) * 1e3,
        "p99_ms": lateness[int(len(lateness) * 0.99) - 1] * 1e3,
    }


def _per_job(url: str, jobs: int) -> dict[str, float]:
    with psycopg.connect(url) as conn:
        row: Any = conn.execute(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM actorq_log"
        ).fetchone()
        size: Any = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "WHERE c.relname LIKE 'actorq_log_%' AND c.relkind = 'r'"
        ).fetchone()
    return {
        "rows_per_job": row[0] / jobs,
        "payload_bytes_per_job": row[1] / jobs,
        "disk_bytes_per_job": float(size[0] or 0) / jobs,
    }


async def _fill(url: str, jobs: int) -> None:
    """A journal holding `jobs` completed jobs (the history a taking-over leader replays)."""
    done = anyio.Event()
    finished = 0

    async def noop(job: Job) -> None:
        nonlocal finished
        finished += 1
        if finished == jobs:
            done.set()

    async with Runtime(url, fsync="interval") as rt:
        q = rt.queue("q")
        for start in range(0, jobs, 10_000):
            await q.add_bulk(
                [
                    {"name": "k", "data": {"tag": "fill", "i": -1 - i}}
                    for i in range(start, min(jobs, start + 10_000))
                ]
            )
        rt.worker(q, noop, concurrency=W1_CONCURRENCY)
        await done.wait()


def _takeover(url: str, *, warm: bool = False) -> float:
    """Seconds from a SIGKILL of the leader (ttl 2 s) to a candidate leading: a cold one
    (``actorq_wait=forever``: replays the whole journal once it has the lease) or a warm
    standby (``actorq_standby=on``: has tailed the log, reads only what came after)."""
    sys.path.insert(0, str(TESTS))
    from test_pg_takeover import Child  # noqa: PLC0415 - the tests' child harness

    leader = Child(f"{url}?actorq_ttl=2", "a", *(["listen"] if warm else []))
    candidate: Child | None = None
    try:
        leader.wait_for("acked", 30, at_least=20)
        if warm:
            candidate = Child(f"{url}?actorq_ttl=2&actorq_standby=on", "b")
            with psycopg.connect(url) as conn:
                row: Any = conn.execute("SELECT max(seq) FROM actorq_log").fetchone()
            deadline = time.monotonic() + 120
            while candidate.applied < row[0]:  # the standby has tailed the history
                assert time.monotonic() < deadline, "the standby's tail did not catch up"
                time.sleep(0.05)
                candidate.pump()
        else:
            candidate = Child(f"{url}?actorq_ttl=2&actorq_wait=forever", "b")
        time.sleep(1.0)  # the candidate is polling the lease
        leader.kill()
        return candidate.wait_for("leading", 60)
    finally:
        leader.kill()
        if candidate is not None:
            candidate.kill()


#: The append statement without its NOTIFY (as it was before warm standbys), for the A/B.
APPEND_QUIET = (
    "INSERT INTO actorq_log (seq, epoch, payload) SELECT %s, epoch, %s FROM actorq_lease "
    "WHERE name = %s AND epoch = %s FOR SHARE"
)


def _notify_ab(admin: str, pairs: int) -> None:
    shipped = schema.APPEND
    figures: dict[str, dict[str, list[float]]] = {"w1": {}, "w2": {}}
    ratios: dict[str, list[float]] = {"w1": [], "w2": []}
    for pair in range(pairs):
        order = [("notify", shipped), ("quiet", APPEND_QUIET)]
        if pair % 2:
            order.reverse()
        got: dict[str, dict[str, float]] = {}
        for label, statement in order:
            schema.APPEND = statement
            try:
                w1 = anyio.run(_w1, _fresh(admin, f"ab{label}w1"), "always")
                w2 = anyio.run(_w2, _fresh(admin, f"ab{label}w2"), "always")["p50_us"]
            finally:
                schema.APPEND = shipped
            got[label] = {"w1": w1, "w2": w2}
            figures["w1"].setdefault(label, []).append(w1)
            figures["w2"].setdefault(label, []).append(w2)
        ratios["w1"].append(got["quiet"]["w1"] / got["notify"]["w1"])
        ratios["w2"].append(got["notify"]["w2"] / got["quiet"]["w2"])
        print(f"pair {pair + 1}: {got}", file=sys.stderr)
    for name, unit in (("w1", "jobs/s"), ("w2", "µs p50")):
        med = {label: statistics.median(v) for label, v in figures[name].items()}
        r = ratios[name]
        print(
            f"{name} postgresql always, {pairs} pairs: with NOTIFY {med['notify']:,.0f} {unit}, "
            f"without {med['quiet']:,.0f} {unit}; cost ratio median {statistics.median(r):.3f} "
            f"(min {min(r):.3f}, max {max(r):.3f})"
        )


def _print_takeovers(admin: str, histories: Sequence[int], reps: int) -> None:
    """The takeover figures, cold and warm alternating rep by rep, for each history."""
    for history in histories:
        template = f"take{history}"  # filled once, copied for each run
        filled = _fresh(admin, template)
        if history:
            anyio.run(_fill, filled, history)
        times: dict[str, list[float]] = {"cold": [], "warm": []}
        for rep in range(reps):
            kinds = ["cold", "warm"] if rep % 2 == 0 else ["warm", "cold"]
            for kind in kinds:
                url = _fresh(admin, f"take{history}{kind}x{rep}", template)
                times[kind].append(_takeover(url, warm=kind == "warm"))
        for kind, got in times.items():
            print(
                f"takeover after SIGKILL, ttl 2 s, {history:,} jobs in the journal, {kind} "
                f"({'a standby' if kind == 'warm' else 'a waiting candidate'}): median "
                f"{statistics.median(got):.2f} s (max {max(got):.2f} s)"
            )


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    sys.path.insert(0, str(TESTS))
    import pg_cluster  # noqa: PLC0415 - the tests' throwaway cluster

    bindir = pg_cluster.find_bindir()
    if bindir is None:
        raise SystemExit(pg_cluster.INSTALL_HINT)
    with pg_cluster.cluster(bindir) as made:
        yield made.url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an admin URL of a server to use (databases are made)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--notify-ab", type=int, metavar="PAIRS", help="the NOTIFY's cost")
    parser.add_argument(
        "--takeover",
        type=int,
        metavar="JOBS",
        help="only the takeover figures, cold and warm, with JOBS completed jobs in the journal",
    )
    args = parser.parse_args(argv)
    load = os.getloadavg()
    print(f"load average at the start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    if args.notify_ab:
        with _server(args.url) as admin:
            _notify_ab(admin, args.notify_ab)
        return 0
    if args.takeover is not None:
        with _server(args.url) as admin:
            _print_takeovers(admin, (args.takeover,), args.reps)
        return 0
    with _server(args.url) as admin, tempfile.TemporaryDirectory() as tmp:
        # The latency workloads first, on a server that has nothing else to do (after the
        # W1 runs, their databases' autovacuum competes for the disk and the CPU).
        for fsync in ("always", "interval"):
            w2 = anyio.run(_w2, _fresh(admin, f"w2{fsync}"), fsync)
            print(
                f"W2 add -> completed, postgresql {fsync}: p50 {w2['p50_us']:,.0f} µs, "
                f"p99 {w2['p99_us']:,.0f} µs"
            )
        w3s = [anyio.run(_w3, _fresh(admin, f"w3x{rep}")) for rep in range(args.reps)]
        print(
            f"W3 lateness, {W3_JOBS:,} jobs due 0-200 ms, postgresql always (median of "
            f"{args.reps}): p50 {statistics.median(w['p50_ms'] for w in w3s):.1f} ms, "
            f"p99 {statistics.median(w['p99_ms'] for w in w3s):.1f} ms"
        )
        w1: dict[str, list[float]] = {}
        for rep in range(args.reps):
            for label, path, fsync in [
                ("memory", None, "always"),
                ("file always", f"{tmp}/w1-{rep}", "always"),
                ("postgresql always", _fresh(admin, f"w1a{rep}"), "always"),
                ("postgresql interval", _fresh(admin, f"w1i{rep}"), "interval"),
            ]:
                w1.setdefault(label, []).append(anyio.run(_w1, path, fsync))
        print(f"W1 end to end, {W1_JOBS:,} jobs (median of {args.reps}):")
        for label, rates in w1.items():
            print(f"  {label:<20} {statistics.median(rates):>10,.0f} jobs/s")
        per = _per_job(admin.rsplit("/", 1)[0] + "/w1a0", W1_JOBS)
        print(
            f"  the log after W1 on postgresql: {per['rows_per_job']:.4f} rows, "
            f"{per['payload_bytes_per_job']:.0f} payload bytes, "
            f"{per['disk_bytes_per_job']:.0f} bytes on disk (TOAST-compressed) per job"
        )
        adds = [anyio.run(_adds, _fresh(admin, f"adds{rep}")) for rep in range(args.reps)]
        print(
            f"W1 one add at a time, {ADDS:,} adds from {W1_CONCURRENCY} tasks, postgresql "
            f"always: {statistics.median(adds):,.0f} jobs/s"
        )
        _print_takeovers(admin, (0, TAKEOVER_HISTORY), args.reps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
