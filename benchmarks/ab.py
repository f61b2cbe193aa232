"""Interleaved A/B benchmark of two actorq source trees: ``python -m benchmarks.ab OLD NEW``.

Options: ``--pairs N`` (default 5), ``--figures w1,manual,w2,w1_always,w3`` (default all).
OLD and NEW are each a source tree (a directory holding ``actorq/`` and ``persistence/``) or
a git revision of this repository, checked out once into a detached worktree at
``<tempdir>/actorq-ab-<shortsha>`` and reused afterwards.

Method: in each pair, every figure runs once per tree, each time in a fresh child process
(this file with ``--child FIGURE``, the tree's root first on PYTHONPATH; the child fails
unless ``actorq`` comes from that tree). The order flips from pair to pair (OLD NEW, NEW
OLD, ...) so drift in the machine's speed hits both trees alike. Children use only the
public API, on asyncio, with ``gc.collect()`` before each timed phase. Figures (as in
benchmarks/manual.py and benchmarks/workloads.py): ``w1``, 20,000 no-op jobs from one
``add_bulk``, timed from ``rt.worker(q, noop, concurrency=50)`` until the last one has run;
``manual``, one consumer looping ``get_next_job`` -> ``move_to_completed(None, token,
fetch_next=True)`` over 20,000 jobs; ``w1_always``, ``w1`` on ``Runtime(tmpdir,
fsync="always")`` in a fresh directory (all three jobs/s, median of 3 runs per child);
``w2``, add->start latency p50 in µs, one job at a time, 2,000 samples after 100 warm-up;
``w3``, lateness p99 in ms of 5,000 jobs due 0-200 ms ahead, one ``add`` each (W3).
The children run these workloads from this file, not from ``benchmarks.manual`` or
``benchmarks.workloads``: with a tree's root first on PYTHONPATH, an import would run each
tree's own (possibly different) workload, and the A/B would compare two programs.

The Markdown table gives each tree's median over the pairs and the median and min-max of
the per-pair ratios, oriented so that above 1 means NEW is better (NEW/OLD for jobs/s,
OLD/NEW for latency). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from actorq import Job, Runtime

JOBS = 20_000
CONCURRENCY = 50
RUNS = 3
W2_SAMPLES = 2_000
W2_WARMUP = 100
# figure -> (unit, higher is better)
FIGURES: dict[str, tuple[str, bool]] = {
    "w1": ("jobs/s", True),
    "manual": ("jobs/s", True),
    "w2": ("µs p50", False),
    "w1_always": ("jobs/s", True),
    "w3": ("ms p99", False),
}
W3_JOBS = 5_000
W3_MAX_DELAY = 0.200
W3_SEED = 1234
HERE = Path(__file__).resolve()


# ---------------------------------------------------------------------- child


async def _w1(runtime: type[Runtime], path: str | None) -> float:
    """Seconds for W1's processing phase, in memory or journaled with fsync="always"."""
    finished = 0
    all_done = anyio.Event()

    async def noop(job: Job) -> None:
        nonlocal finished
        finished += 1
        if finished == JOBS:
            all_done.set()

    async with runtime() if path is None else runtime(path, fsync="always") as rt:
        q = rt.queue("w1")
        await q.add_bulk([{"name": "noop", "data": None} for _ in range(JOBS)])
        gc.collect()
        t0 = time.perf_counter()
        rt.worker(q, noop, concurrency=CONCURRENCY)
        await all_done.wait()
        elapsed = time.perf_counter() - t0
        counts = await q.counts()
    if counts["completed"] != JOBS:
        raise RuntimeError(f"w1: expected {JOBS} completed, got {counts}")
    return elapsed


async def _manual(runtime: type[Runtime]) -> float:
    """Seconds for one consumer to fetch and complete `JOBS` jobs with fetch-next."""
    async with runtime() as rt:
        q = rt.queue("manual")
        w = rt.worker(q)
        await q.add_bulk([{"name": "noop", "data": None} for _ in range(JOBS)])
        done = 0
        gc.collect()
        t0 = time.perf_counter()
        job = await w.get_next_job("bench")
        while job is not None:
            job = await job.move_to_completed(None, "bench", fetch_next=True)
            done += 1
        elapsed = time.perf_counter() - t0
        counts = await q.counts()
    if done != JOBS or counts["completed"] != JOBS:
        raise RuntimeError(f"manual: expected {JOBS} completed, got {done} / {counts}")
    return elapsed


async def _w2(runtime: type[Runtime]) -> float:
    """Median add->start latency in seconds over `W2_SAMPLES` jobs, one at a time."""
    started = [0.0]

    async def process(job: Job) -> None:
        started[0] = time.perf_counter()

    to_start: list[float] = []
    async with runtime() as rt:
        q = rt.queue("w2")
        rt.worker(q, process, concurrency=1)
        gc.collect()
        for i in range(W2_WARMUP + W2_SAMPLES):
            t0 = time.perf_counter()
            job = await q.add("ping", None)
            await job.wait_until_finished()
            if i >= W2_WARMUP:
                to_start.append(started[0] - t0)
    return statistics.median(to_start)


async def _w3(runtime: type[Runtime]) -> float:
    """W3's lateness p99 in seconds: 5,000 jobs due 0-200 ms ahead, one `add` each,
    concurrency 50 (as `benchmarks.workloads.w3_delayed`)."""
    rng = random.Random(W3_SEED)
    delays = [rng.uniform(0.0, W3_MAX_DELAY) for _ in range(W3_JOBS)]
    lateness: list[float] = []
    done = anyio.Event()

    async def process(job: Job) -> None:
        now = time.time()
        lateness.append(now - (job.created_at + job.data["delay"]))
        if len(lateness) == W3_JOBS:
            done.set()

    async with runtime() as rt:
        q = rt.queue("w3")
        rt.worker(q, process, concurrency=50)
        gc.collect()
        for d in delays:
            await q.add("later", {"delay": d}, delay=d)
        await done.wait()
    ordered = sorted(lateness)
    return ordered[max(1, math.ceil(0.99 * len(ordered))) - 1]


def _figure(name: str, runtime: type[Runtime]) -> tuple[float, list[float]]:
    """The figure `name` in its unit, and the single runs it is the median of."""
    if name == "w2":
        value = anyio.run(_w2, runtime, backend="asyncio") * 1e6
        return value, [value]
    if name == "w3":
        value = anyio.run(_w3, runtime, backend="asyncio") * 1e3
        return value, [value]
    runs: list[float] = []
    for _ in range(RUNS):
        if name == "manual":
            runs.append(JOBS / anyio.run(_manual, runtime, backend="asyncio"))
        elif name == "w1":
            runs.append(JOBS / anyio.run(_w1, runtime, None, backend="asyncio"))
        else:
            with tempfile.TemporaryDirectory(prefix="actorq-ab-") as tmp:
                journal = str(Path(tmp, "journal"))
                runs.append(JOBS / anyio.run(_w1, runtime, journal, backend="asyncio"))
    return statistics.median(runs), runs


def child(name: str) -> None:
    """Check where actorq comes from, run figure `name` and print it as one JSON line."""
    import actorq  # noqa: PLC0415 - only the child imports the tree under test

    root = Path(os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or "/").resolve()
    found = Path(actorq.__file__ or "").resolve()
    if root == Path("/") or not found.is_relative_to(root):
        raise SystemExit(f"ab child: actorq imported from {found}, not from the tree {root}")
    value, runs = _figure(name, actorq.Runtime)
    print(json.dumps({"figure": name, "value": value, "runs": runs, "actorq": str(found)}))


# ---------------------------------------------------------------------- parent


def _git(cwd: Path, *args: str) -> str | None:
    """`git args` run in `cwd`, its stripped stdout, or None when git fails."""
    cmd = ["git", "-C", str(cwd), *args]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def resolve_tree(spec: str) -> Path:
    """A source tree's root: `spec` itself, or a (reused) detached worktree of a revision."""
    path = Path(spec)
    if not path.is_dir():
        repo = HERE.parent
        sha = _git(repo, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
        if sha is None:
            raise SystemExit(f"ab: {spec!r} is neither a directory nor a git revision")
        short = _git(repo, "rev-parse", "--short", sha) or sha[:7]
        path = Path(tempfile.gettempdir(), f"actorq-ab-{short}")
        if not path.exists():
            print(f"ab: creating worktree {path} at {short}", file=sys.stderr)
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "add", "--detach", str(path), sha],
                check=True,
                stdout=sys.stderr,
            )
        elif _git(path, "rev-parse", "HEAD") != sha:
            raise SystemExit(f"ab: {path} exists but is not a checkout of {sha}")
    path = path.resolve()
    for package in ("actorq", "persistence"):
        if not (path / package / "__init__.py").is_file():
            raise SystemExit(f"ab: {path} has no {package}/ package")
    return path


def describe(tree: Path) -> str:
    """The tree's path and short HEAD (with "+dirty" for uncommitted tracked changes)."""
    head = _git(tree, "rev-parse", "--short", "HEAD")
    if head is None:
        return str(tree)
    dirty = _git(tree, "status", "--porcelain", "--untracked-files=no")
    return f"{tree} ({head}{'+dirty' if dirty else ''})"


def machine() -> str:
    """CPU model from /proc/cpuinfo, nproc and the Python version."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    model = models[0] if models else platform.processor() or "unknown CPU"
    nproc = len(os.sched_getaffinity(0))
    return f"{model}, nproc {nproc}, Python {platform.python_version()}"


def run_child(tree: Path, name: str) -> float:
    """Run figure `name` in a fresh interpreter against `tree`; its value."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, str(HERE), "--child", name]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"ab: child {name} failed on {tree} (exit {proc.returncode})")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(result["value"])


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, run the interleaved pairs and print the table."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--child" and argv[1] in FIGURES:
        child(argv[1])
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("old", help="source tree or git revision")
    parser.add_argument("new", help="source tree or git revision")
    parser.add_argument("--pairs", type=int, default=5, help="A/B pairs (default 5)")
    parser.add_argument("--figures", default=",".join(FIGURES), help="comma-separated")
    args = parser.parse_args(argv)
    figures = [f.strip() for f in args.figures.split(",") if f.strip()]
    if unknown := [f for f in figures if f not in FIGURES]:
        parser.error(f"unknown figures {unknown}; choose from {', '.join(FIGURES)}")
    pairs = max(1, args.pairs)
    trees = {"OLD": resolve_tree(args.old), "NEW": resolve_tree(args.new)}
    values: dict[str, dict[str, list[float]]] = {f: {"OLD": [], "NEW": []} for f in figures}
    for pair in range(pairs):
        order = ("OLD", "NEW") if pair % 2 == 0 else ("NEW", "OLD")
        for name in figures:
            for side in order:
                value = run_child(trees[side], name)
                values[name][side].append(value)
                print(f"pair {pair + 1}/{pairs} {name} {side}: {value:,.1f}", file=sys.stderr)

    print(
        f"OLD {describe(trees['OLD'])} vs NEW {describe(trees['NEW'])} · {machine()} · "
        f"`{shlex.join(sys.orig_argv)}`"
    )
    print()
    print("| figure | OLD median | NEW median | ratio median¹ | ratio min-max¹ |")
    print("|---|---:|---:|---:|---:|")
    for name in figures:
        unit, higher_better = FIGURES[name]
        old, new = values[name]["OLD"], values[name]["NEW"]
        ratios = [n / o if higher_better else o / n for o, n in zip(old, new, strict=True)]
        label = f"{name} ({unit}, {'NEW/OLD' if higher_better else 'OLD/NEW'})"
        print(
            f"| {label} | {statistics.median(old):,.1f} | {statistics.median(new):,.1f} "
            f"| {statistics.median(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f} |"
        )
    print()
    print(
        f"¹ Per-pair ratios over {pairs} interleaved pair(s), NEW/OLD for jobs/s and OLD/NEW for "
        "latency, so > 1 means NEW is better. Each cell is one fresh child process "
        f"(median of {RUNS} runs; w2: p50 of {W2_SAMPLES:,} samples)."
    )


if __name__ == "__main__":
    main()
