"""Scaling curves for actorq: ``python -m benchmarks.scaling [--quick]``.

Three curves, each point measured in a fresh Python process (so one size's heap does not
carry into the next one's memory or timing):

* **jobs waiting** (1k, 10k, 100k, 1M): that many priority -1 jobs wait in the queue (added
  in `add_bulk`s of <= 50k) while 20,000 no-op priority-0 jobs are processed at concurrency
  50, as in the ``scaling`` workload of `benchmarks.run`. Per-job processing cost, the cost
  of one more `add`, and memory per waiting job.
* **jobs delayed** (1k, 10k, 100k, 1M): that many jobs sit in the delayed set, due in 10
  days, while the same 20,000 ready jobs are processed. Per-job processing cost, the cost of
  one more delayed `add`, memory per delayed job, and the lateness of 1,000 jobs added one at
  a time due 0–100 ms ahead (start − due, as W3 measures it) with the delayed set in place.
* **replay** (10k, 100k, 1M jobs): a `Runtime(path=..., fsync="never")` journal gets the jobs
  (`add_bulk`s of 10k, 90% of them left waiting, 10% processed to completed), is closed, and
  a new process times ``async with Runtime(path=...)`` until the block is entered.

Real clock (`SystemClock`) throughout: the figures are wall time on this machine. Memory is
the current traced size from tracemalloc (only up to `trace_max` jobs: tracing slows adding
about 5×) and the growth of the process's resident set (RSS, from ``/proc/self/statm``), both
taken after the filler is added, two small round trips and a ``gc.collect()``, divided by the
jobs. Options: ``--quick`` (sizes up to 100k, 1 repetition, tracemalloc up to 10k),
``--reps N`` (timing repetitions per point; default 2, 1 with ``--quick``), ``--output DIR``.
Writes ``scaling.md`` and, if matplotlib is installed, ``scaling.png`` there
(default ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio

from actorq import Job, Runtime

from .run import fmt, machine_line, size_label
from .workloads import W1_CONCURRENCY, percentile

HERE = Path(__file__).resolve().parent
OUT = HERE / "results"
BATCH = 20_000  # ready jobs processed at each point (W1's size)
FILLER_CHUNK = 50_000
FAR = 10 * 86_400.0  # the delayed filler is due in 10 days
ADD_PROBES = 1_000  # single `add` calls timed with the filler in place
LATE_JOBS = 1_000
LATE_MAX_DELAY = 0.100
LATE_SEED = 1234
JOURNAL_CHUNK = 10_000
COMPLETED_SHARE = 10  # one job in 10 of the replay journal is processed to completed
CURVE_SIZES = {"full": (1_000, 10_000, 100_000, 1_000_000), "quick": (1_000, 10_000, 100_000)}
REPLAY_SIZES = {"full": (10_000, 100_000, 1_000_000), "quick": (10_000, 100_000)}
TRACE_MAX = {"full": 100_000, "quick": 10_000}
CHILD_TIMEOUT = 600

Sample = dict[str, Any]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- in the child


def rss_bytes() -> int | None:
    """The process's current resident set, or None where ``/proc`` is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _filler(kind: str, n: int) -> Iterator[list[dict[str, Any]]]:
    spec: dict[str, Any] = (
        {"name": "filler", "data": None, "priority": -1}
        if kind == "waiting"
        else {"name": "filler", "data": None, "delay": FAR}
    )
    for start in range(0, n, FILLER_CHUNK):
        yield [dict(spec) for _ in range(min(FILLER_CHUNK, n - start))]


async def curve_point(kind: str, n: int, trace: bool) -> Sample:
    """One point of the waiting or delayed curve; see the module docstring."""
    processed = filler_started = 0
    filler_before_done = -1  # filler jobs started before the batch's last job ran
    batch_done = anyio.Event()
    lateness: list[float] = []
    late_done = anyio.Event()

    async def process(job: Job) -> None:
        nonlocal processed, filler_started, filler_before_done
        if job.name == "soon":
            lateness.append(time.time() - (job.created_at + job.data["delay"]))
            if len(lateness) == LATE_JOBS:
                late_done.set()
        elif job.name != "noop":  # the filler and the probes
            filler_started += 1
        else:
            processed += 1
            if processed == BATCH:
                filler_before_done = filler_started
                batch_done.set()

    out: Sample = {}
    async with Runtime() as rt:
        q = rt.queue("scaling")
        await q.counts()
        gc.collect()
        if trace:
            tracemalloc.start()
        traced0 = tracemalloc.get_traced_memory()[0] if trace else 0
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        for chunk in _filler(kind, n):
            await q.add_bulk(chunk)
        fill_s = time.perf_counter() - t0
        # Two small round trips, so the scheduler drops its references to the last batch.
        await q.counts()
        await q.counts()
        gc.collect()
        if trace:
            out["traced_b_per_job"] = (tracemalloc.get_traced_memory()[0] - traced0) / n
            tracemalloc.stop()
            gc.collect()
        else:
            rss1 = rss_bytes()
            if rss0 is not None and rss1 is not None:
                out["rss_b_per_job"] = (rss1 - rss0) / n
            out["fill_jobs_s"] = n / fill_s

        # One more job of the filler's kind, one `add` at a time.
        opts: dict[str, Any] = {"priority": -1} if kind == "waiting" else {"delay": FAR}
        t0 = time.perf_counter()
        for _ in range(ADD_PROBES):
            await q.add("probe", None, **opts)
        out["add_one_us"] = (time.perf_counter() - t0) / ADD_PROBES * 1e6

        await q.add_bulk([{"name": "noop", "data": None} for _ in range(BATCH)])
        gc.collect()
        t0 = time.perf_counter()
        rt.worker(q, process, concurrency=W1_CONCURRENCY)
        await batch_done.wait()
        out["process_us_per_job"] = (time.perf_counter() - t0) / BATCH * 1e6
        if kind == "waiting":
            await q.pause()  # the worker would go on with the filler

        if kind == "delayed":
            rng = random.Random(LATE_SEED)
            for _ in range(LATE_JOBS):
                delay = rng.uniform(0.0, LATE_MAX_DELAY)
                await q.add("soon", {"delay": delay}, delay=delay)
            await late_done.wait()
            out |= {
                "late_p50_ms": statistics.median(lateness) * 1e3,
                "late_p99_ms": percentile(lateness, 99) * 1e3,
                "late_max_ms": max(lateness) * 1e3,
                "early": float(sum(1 for x in lateness if x < 0)),
            }

        counts = await q.counts()
        await q.pause()  # the waiting filler must not run during shutdown
    # The ready batch ran first: at most the worker's last few claims went to the filler
    # (the probes included) before the batch's last job; delayed filler never runs.
    if not 0 <= filler_before_done <= 4 * W1_CONCURRENCY or (
        kind == "delayed" and counts["delayed"] != n + ADD_PROBES
    ):
        raise RuntimeError(
            f"{kind} {n}: {filler_before_done} filler jobs ran before the batch; {counts}"
        )
    return out


async def build_journal(path: str, n: int) -> None:
    """`n` jobs journaled at `path`: 90% left waiting in one queue, 10% completed in another."""
    done_n = n // COMPLETED_SHARE
    finished = 0
    all_done = anyio.Event()

    async def noop(job: Job) -> None:
        nonlocal finished
        finished += 1
        if finished == done_n:
            all_done.set()

    async with Runtime(path=path, fsync="never") as rt:
        for qname, count in (("waiting", n - done_n), ("done", done_n)):
            q = rt.queue(qname)
            for start in range(0, count, JOURNAL_CHUNK):
                size = min(JOURNAL_CHUNK, count - start)
                await q.add_bulk([{"name": "j", "data": {"i": start + i}} for i in range(size)])
        rt.worker(rt.queue("done"), noop, concurrency=W1_CONCURRENCY)
        await all_done.wait()


def count_records(path: str) -> tuple[int, float]:
    """(change records a reopen replays, seconds to read and decode them without applying)."""
    from actorq._journal import open_changelog  # noqa: PLC0415 (internal: the count only)

    t0 = time.perf_counter()
    changelog = open_changelog(path, fsync="never")
    try:
        records = sum(1 for _ in changelog.replay())
    finally:
        changelog.close()
    return records, time.perf_counter() - t0


def journal_point(path: str, n: int) -> Sample:
    """Build the journal in this process; count its records."""
    t0 = time.perf_counter()
    anyio.run(build_journal, path, n)
    build_s = time.perf_counter() - t0
    gc.collect()
    records, decode_s = count_records(path)
    files = [p for p in Path(path).rglob("*") if p.is_file()]
    return {
        "build_s": build_s,
        "records": records,
        "decode_s": decode_s,
        "disk_bytes": sum(p.stat().st_size for p in files),
        "snapshot": any("snap" in p.name for p in files),
    }


async def reopen_point(path: str, n: int) -> Sample:
    """Time ``async with Runtime(path=...)`` until the block is entered (a fresh process)."""
    gc.collect()
    t0 = time.perf_counter()
    async with Runtime(path=path) as rt:
        reopen_s = time.perf_counter() - t0
        totals = await rt.counts()
    jobs = sum(sum(by_state.values()) for by_state in totals.values())
    if jobs != n or totals["done"]["completed"] != n // COMPLETED_SHARE:
        raise RuntimeError(f"reopen {n}: the journal replayed {totals}")
    return {"reopen_s": reopen_s}


def child(spec: dict[str, Any]) -> Sample:
    what = spec["what"]
    if what == "curve":
        return anyio.run(curve_point, spec["kind"], spec["n"], spec["trace"])
    if what == "journal":
        return journal_point(spec["path"], spec["n"])
    return anyio.run(reopen_point, spec["path"], spec["n"])


# ---------------------------------------------------------------------- in the parent


def spawn(label: str, spec: dict[str, Any]) -> Sample:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", "--child", json.dumps(spec)],
        cwd=HERE.parent,
        stdout=subprocess.PIPE,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=True,
    )
    log(f"  {label}: {time.perf_counter() - t0:.1f} s")
    sample: Sample = json.loads(out.stdout.strip().splitlines()[-1])
    return sample


def med(samples: list[Sample], key: str) -> float | None:
    vals = [float(s[key]) for s in samples if key in s]
    return statistics.median(vals) if vals else None


def run_curves(mode: str, reps: int) -> dict[str, dict[int, list[Sample]]]:
    out: dict[str, dict[int, list[Sample]]] = {}
    for kind in ("waiting", "delayed"):
        out[kind] = {}
        for n in CURVE_SIZES[mode]:
            samples = []
            for rep in range(reps):
                label = f"{kind} {size_label(n)}, rep {rep + 1}/{reps}"
                samples.append(
                    spawn(label, {"what": "curve", "kind": kind, "n": n, "trace": False})
                )
            if n <= TRACE_MAX[mode]:
                spec = {"what": "curve", "kind": kind, "n": n, "trace": True}
                traced = spawn(f"{kind} {size_label(n)}, tracemalloc", spec)
                samples.append({"traced_b_per_job": traced["traced_b_per_job"]})
            out[kind][n] = samples
    return out


def run_replay(mode: str, root: Path) -> dict[int, Sample]:
    out: dict[int, Sample] = {}
    for n in REPLAY_SIZES[mode]:
        path = str(root / f"journal-{n}")
        sample = spawn(f"journal {size_label(n)}, build", {"what": "journal", "path": path, "n": n})
        sample |= spawn(
            f"journal {size_label(n)}, reopen", {"what": "reopen", "path": path, "n": n}
        )
        shutil.rmtree(path, ignore_errors=True)
        out[n] = sample
    return out


def cell(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{fmt(value)}{unit}"


def render(machine: str, command: str, curves: dict[str, dict[int, list[Sample]]],
           replay: dict[int, Sample], reps: int, trace_max: int) -> str:  # fmt: skip
    lines = [
        "## actorq scaling curves",
        "",
        machine,
        "",
        f"**Command:** `{command}`",
        "",
    ]
    what = {
        "waiting": ("Jobs waiting", "priority -1 jobs waiting in the same queue", "waiting"),
        "delayed": ("Jobs delayed", "jobs in the delayed set, due in 10 days", "delayed"),
    }
    for kind, by_n in curves.items():
        title, desc, noun = what[kind]
        lines += [
            f"### {title}: {BATCH:,} no-op jobs processed at concurrency {W1_CONCURRENCY} "
            f"with N {desc}",
            "",
        ]
        head = ["N", "process µs/job (min–max)", f"÷ at {size_label(min(by_n))}",
                f"add one {noun} job µs", "fill jobs/s (`add_bulk`)",
                "tracemalloc B/job", "RSS B/job"]  # fmt: skip
        if kind == "delayed":
            head += ["lateness p50 / p99 / max ms", "early"]
        lines += ["| " + " | ".join(head) + " |", "|---" + "|--:" * (len(head) - 1) + "|"]
        base = med(by_n[min(by_n)], "process_us_per_job")
        for n, samples in by_n.items():
            per = med(samples, "process_us_per_job")
            times = [float(x["process_us_per_job"]) for x in samples if "process_us_per_job" in x]
            spread = f" ({fmt(min(times))}–{fmt(max(times))})" if len(times) > 1 else ""
            row = [
                size_label(n),
                cell(per) + spread,
                f"{per / base:.2f}×" if per is not None and base else "—",
                cell(med(samples, "add_one_us")),
                cell(med(samples, "fill_jobs_s")),
                cell(med(samples, "traced_b_per_job")),
                cell(med(samples, "rss_b_per_job")),
            ]
            if kind == "delayed":
                p50, p99, mx = (med(samples, k) for k in ("late_p50_ms", "late_p99_ms",
                                                          "late_max_ms"))  # fmt: skip
                row.append(f"{cell(p50)} / {cell(p99)} / {cell(mx)}")
                early = sum(int(s.get("early", 0)) for s in samples)
                row.append(str(early))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    if replay:
        lines += [
            "### Replay: reopening a journal (`Runtime(path=...)`) of N jobs, "
            f"{100 // COMPLETED_SHARE}% of them completed",
            "",
            "| N jobs | change records | on disk | snapshot | reopen s | records/s | jobs/s "
            "| decode only s | build s |",
            "|---|--:|--:|---|--:|--:|--:|--:|--:|",
        ]
        for n, s in replay.items():
            lines.append(
                f"| {size_label(n)} | {s['records']:,} | {s['disk_bytes'] / 2**20:.1f} MiB "
                f"| {'yes' if s['snapshot'] else 'no'} | {s['reopen_s']:.2f} "
                f"| {fmt(s['records'] / s['reopen_s'])} | {fmt(n / s['reopen_s'])} "
                f"| {s['decode_s']:.2f} | {s['build_s']:.1f} |"
            )
        lines.append("")
    lines += [
        f"- Each point runs in a fresh process; timings are the median of {reps} run(s) on the "
        "real clock. Checked: the batch ran before the filler (at most the worker's last "
        "claims went to it) and the delayed filler stayed delayed.",
        f"- Memory: tracemalloc for N ≤ {size_label(trace_max)} (one extra traced run per "
        "point), RSS growth of an untraced run for every N; both after adding the filler "
        "(`add_bulk`s of ≤ 50k), two round trips and a `gc.collect()`, divided by N. RSS "
        "includes the allocator's slack and rounds to pages: read it at 100k and up.",
        f"- `add one … job`: {ADD_PROBES:,} sequential `await q.add(...)` calls (each run "
        f"inline while the scheduler is idle) before any worker runs. Lateness: "
        f"{LATE_JOBS:,} jobs added one at a time, due 0–{LATE_MAX_DELAY * 1000:.0f} ms "
        "ahead, start (`time.time()`) − `created_at + delay`.",
        '- Replay: the journal is built with `fsync="never"` in one process (`add_bulk`s of '
        f"{JOURNAL_CHUNK:,}; 1 job in {COMPLETED_SHARE} processed), then a new process times "
        "`async with Runtime(path=...)` until the block is entered. Records: change records "
        "the reopen replays (snapshot, if one was written, plus the frames after it), "
        "counted in the build process; `decode only` reads and decodes them without applying.",
        "- A shared 2-core machine: compare figures within one run only.",
    ]
    return "\n".join(lines) + "\n"


def plot(curves: dict[str, dict[int, list[Sample]]], replay: dict[int, Sample],
         path: Path) -> bool:  # fmt: skip
    try:
        import matplotlib  # noqa: PLC0415 (optional: only the plot needs it)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        log("  matplotlib not installed: no plot")
        return False
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    style = {"waiting": ("tab:blue", "o"), "delayed": ("tab:orange", "s")}
    for kind, by_n in curves.items():
        color, marker = style[kind]
        ns = sorted(by_n)
        per = [med(by_n[n], "process_us_per_job") for n in ns]
        axes[0].plot(ns, per, marker=marker, color=color, label=f"process, N {kind}")
        add = [med(by_n[n], "add_one_us") for n in ns]
        axes[0].plot(ns, add, marker=marker, color=color, linestyle="--",
                     label=f"add one {kind} job")  # fmt: skip
        for key, ls, what in (("traced_b_per_job", "-", "tracemalloc"),
                              ("rss_b_per_job", ":", "RSS")):  # fmt: skip
            pts = [(n, v) for n in ns if (v := med(by_n[n], key)) is not None]
            if pts:
                axes[1].plot(*zip(*pts, strict=True), marker=marker, color=color,
                             linestyle=ls, label=f"{kind}, {what}")  # fmt: skip
    axes[0].set_title(f"µs per job ({BATCH:,} processed) and per single add")
    axes[1].set_title("memory per filler job (bytes)")
    for ax in axes[:2]:
        ax.set_xscale("log")
        ax.set_xlabel("N jobs waiting / delayed")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if replay:
        recs = [s["records"] for s in replay.values()]
        secs = [s["reopen_s"] for s in replay.values()]
        axes[2].plot(recs, secs, marker="o", color="tab:green", label="reopen (decode + apply)")
        axes[2].plot(recs, [s["decode_s"] for s in replay.values()], marker="o",
                     color="tab:green", linestyle="--", label="decode only")  # fmt: skip
        for r, t in zip(recs, secs, strict=True):
            axes[2].annotate(f"{r / t:,.0f} rec/s", (r, t), textcoords="offset points",
                             xytext=(-6, 4), ha="right", fontsize=8)  # fmt: skip
        axes[2].set_xscale("log")
        axes[2].set_yscale("log")
        axes[2].set_xlabel("change records replayed")
        axes[2].set_ylabel("seconds")
        axes[2].set_title("replay time vs journal size")
        axes[2].grid(alpha=0.3)
        axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="sizes up to 100k, 1 repetition")
    ap.add_argument("--reps", type=int, help="timing repetitions per point (default 2; 1 quick)")
    ap.add_argument("--no-replay", action="store_true", help="skip the replay curve")
    ap.add_argument("--output", type=Path, default=OUT, help="report directory")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    mode = "quick" if args.quick else "full"
    reps = args.reps or (1 if args.quick else 2)
    if reps < 1:
        ap.error("--reps must be at least 1")
    rest = list(argv) if argv is not None else sys.argv[1:]
    exe = sys.executable
    rel = os.path.relpath(exe)
    command = shlex.join([exe if rel.startswith("..") else rel, "-m", "benchmarks.scaling", *rest])
    machine = machine_line("asyncio", reps, args.quick)
    log(machine)
    t_start = time.perf_counter()
    curves = run_curves(mode, reps)
    replay: dict[int, Sample] = {}
    if not args.no_replay:
        root = Path(tempfile.mkdtemp(prefix="actorq-bench-scaling-"))
        try:
            replay = run_replay(mode, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    text = render(machine, command, curves, replay, reps, TRACE_MAX[mode])
    text += f"- Wall time of the run: {time.perf_counter() - t_start:.0f} s.\n"
    print(text, end="")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "scaling.md").write_text(text, encoding="utf-8")
    (args.output / "scaling.json").write_text(
        json.dumps({"curves": curves, "replay": replay}, indent=1), encoding="utf-8"
    )
    written = ["scaling.md", "scaling.json"]
    if plot(curves, replay, args.output / "scaling.png"):
        written.append("scaling.png")
    log(f"(written to {args.output}: {', '.join(written)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
