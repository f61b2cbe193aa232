"""Instructions per job, counted by valgrind: ``python -m benchmarks.instructions TREE...``.

Options: ``--figures core,manual,w1`` (default all), ``--jobs N`` (default 3,000).
Each TREE is a source tree (a directory holding ``actorq/``) or a git revision, resolved as
`benchmarks.ab` does. This machine's timings swing by a quarter from run to run; an
instruction count does not, so it tells a change of a few percent apart from noise in one
run (it is no timing: a cache miss costs nothing here, and it runs ~50x slower).

Method: each figure runs twice per tree under ``valgrind --tool=callgrind`` in a fresh
child (this file with ``--child FIGURE JOBS LOOP``, the tree first on PYTHONPATH): once with
the measured loop and once without it (the same setup: start, add the jobs). The figure is
the difference of the two totals divided by the number of jobs. The garbage collector is
off in the children, so a collection that happens to fall in one run and not in the other
does not swing the figure by thousands; allocation's cost to the collector is not counted.

Figures: ``core``, a take and a complete of one job on `CoreState` directly, recording
changes (no runtime); ``manual``, `get_next_job` -> ``move_to_completed(fetch_next=True)``
on ``Runtime()``; ``w1``, a worker with concurrency 50 running no-op jobs on ``Runtime()``;
``add_bulk``, one ``add_bulk`` of the plain jobs (the item list is built in both runs);
``add_options``, the same with ``priority``, ``delay``, ``tags`` and ``attempts``;
``add_each``, one ``add`` call per job. An add figure divided by ``w1`` is the ratio
`benchmarks.add` prints, in instructions.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

FIGURES = ("core", "manual", "w1", "add_bulk", "add_options", "add_each")
HERE = Path(__file__).resolve()


def _core(jobs: int, loop: bool) -> None:
    from actorq._core import CoreState  # noqa: PLC0415 - the tree under test
    from actorq._core.records import JobSpec  # noqa: PLC0415

    core = CoreState()
    core.record_changes(True)
    core.add([JobSpec(name="n", queue="q", data=b"null") for _ in range(jobs)], 0.0)
    core.take_effects()
    if loop:
        for _ in range(jobs):
            (rec,) = core.take("q", 1, 1.0, "tok", 100.0, 1)
            core.complete(rec.id, "tok", None, 1.0)


async def _manual(jobs: int, loop: bool) -> None:
    import actorq  # noqa: PLC0415

    async with actorq.Runtime() as rt:
        q = rt.queue("manual")
        w = rt.worker(q)
        await q.add_bulk([{"name": "noop", "data": None} for _ in range(jobs)])
        if loop:
            job = await w.get_next_job("bench")
            while job is not None:
                job = await job.move_to_completed(None, "bench", fetch_next=True)


async def _w1(jobs: int, loop: bool) -> None:
    import anyio  # noqa: PLC0415

    import actorq  # noqa: PLC0415

    done = anyio.Event()
    finished = 0

    async def noop(job: Any) -> None:
        nonlocal finished
        finished += 1
        if finished == jobs:
            done.set()

    async with actorq.Runtime() as rt:
        q = rt.queue("w1")
        await q.add_bulk([{"name": "noop", "data": None} for _ in range(jobs)])
        if loop:
            rt.worker(q, noop, concurrency=50)
            await done.wait()


async def _add(figure: str, jobs: int, loop: bool) -> None:
    import actorq  # noqa: PLC0415

    if figure == "add_options":
        items = [
            {"name": "n", "data": {"i": i}, "priority": 5, "delay": 60.0,
             "tags": ["bench", "add"], "attempts": 3}
            for i in range(jobs)
        ]  # fmt: skip
    else:
        items = [{"name": "n", "data": None} for _ in range(jobs)]
    async with actorq.Runtime() as rt:
        q = rt.queue("add")
        if loop:
            if figure == "add_each":
                for _ in range(jobs):
                    await q.add("n", None)
            else:
                await q.add_bulk(items)


def child(figure: str, jobs: int, loop: bool) -> None:
    import anyio  # noqa: PLC0415

    gc.disable()
    if figure == "core":
        _core(jobs, loop)
    elif figure.startswith("add"):
        anyio.run(_add, figure, jobs, loop, backend="asyncio")
    else:
        anyio.run(_manual if figure == "manual" else _w1, jobs, loop, backend="asyncio")


def _instructions(tree: Path, figure: str, jobs: int, loop: bool) -> int:
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(HERE),
        "--child",
        figure,
        str(jobs),
        "1" if loop else "0",
    ]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if found is None:
        raise SystemExit(f"instructions: no count in valgrind's output:\n{proc.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*")
    parser.add_argument("--figures", default=",".join(FIGURES))
    parser.add_argument("--jobs", type=int, default=3_000)
    parser.add_argument("--child", nargs=3, metavar=("FIGURE", "JOBS", "LOOP"))
    args = parser.parse_args(argv)
    if args.child:
        figure, jobs, loop = args.child
        child(figure, int(jobs), loop == "1")
        return
    from benchmarks.ab import resolve_tree  # noqa: PLC0415 - the parent only

    figures = args.figures.split(",")
    trees = [resolve_tree(spec) for spec in args.trees or ["."]]
    print("| tree | " + " | ".join(f"{f} (instr/job)" for f in figures) + " |")
    print("|---|" + "---|" * len(figures))
    for tree in trees:
        cells = []
        for figure in figures:
            with_loop = _instructions(tree, figure, args.jobs, True)
            without = _instructions(tree, figure, args.jobs, False)
            cells.append(f"{(with_loop - without) // args.jobs:,}")
        print(f"| {tree} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
