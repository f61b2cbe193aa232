"""Run actorq's benchmarks and print a Markdown table: ``python -m benchmarks.run``.

Options: ``--quick`` (2 repetitions, scaling at 10k and 100k only), ``--only W1,W2``
(workloads: floor, W1, W2, W3, scaling), ``--backend trio``, ``--reps N``. The table is
also written to ``benchmarks/results/latest.md``.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import anyio

from . import workloads as wl
from .workloads import Sample

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.md"
WORKLOADS = ("floor", "W1", "W2", "W3", "scaling")
SIZES_FULL = (10_000, 100_000, 1_000_000)
SIZES_QUICK = (10_000, 100_000)


@dataclass
class Row:
    workload: str
    metric: str
    values: list[float]
    unit: str
    note: str = ""
    goal: str = ""
    ok: bool | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.values)


# ---------------------------------------------------------------------- formatting


def fmt(value: float) -> str:
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1 or value == 0:
        return f"{value:.2f}".rstrip("0").rstrip(".") if value == int(value) else f"{value:.2f}"
    return f"{value:.3f}"


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return "(1 run)"
    return f"{fmt(min(values))}–{fmt(max(values))}"


def status(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "MISS")


def render(machine: str, rows: list[Row], notes: list[str]) -> str:
    lines = [
        machine,
        "",
        "| Workload | Metric | Median | Min–max | Note | Goal | |",
        "|---|---|--:|--:|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.workload} | {r.metric} | {fmt(r.median)} {r.unit} | {spread(r.values)} "
            f"| {r.note} | {r.goal} | {status(r.ok)} |"
        )
    lines.append("")
    lines.extend(f"- {n}" for n in notes)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- machine line


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def machine_line(backend: str, reps: int, quick: bool) -> str:
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    core_text = f"{cores} cores" + (f" ({usable} usable)" if usable != cores else "")
    backend_text = backend if backend == "asyncio" else f"{backend} {pkg_version(backend)}"
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick" if quick else "full"
    return (
        f"**Machine:** {cpu_model()} · {core_text} · Python {platform.python_version()} "
        f"({platform.python_implementation()}) · anyio {pkg_version('anyio')} · "
        f"backend {backend_text} · {date} · actorq {pkg_version('actorq')} @ {git_commit()} "
        f"· {mode} run, {reps} reps"
    )


# ---------------------------------------------------------------------- running


def repeat(
    label: str, fn: Callable[[], Awaitable[Sample]], reps: int, backend: str
) -> list[Sample]:
    out: list[Sample] = []
    for i in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        out.append(anyio.run(fn, backend=backend))
        print(
            f"  {label}: rep {i + 1}/{reps} in {time.perf_counter() - t0:.2f} s",
            file=sys.stderr,
            flush=True,
        )
    return out


def col(samples: list[Sample], key: str) -> list[float]:
    return [s[key] for s in samples if key in s]


def size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def run(selected: Sequence[str], reps: int, backend: str, quick: bool) -> tuple[str, bool]:
    rows: list[Row] = []
    notes: list[str] = []
    nowait = awaited = noop = 0.0
    all_ok = True

    if {"floor", "W1", "scaling"} & set(selected):
        floor = repeat("floor", wl.floor, reps, backend)
        nowait_v, awaited_v, noop_v = (
            col(floor, k) for k in ("nowait_us", "awaited_us", "noop_us")
        )
        nowait, awaited, noop = (statistics.median(v) for v in (nowait_v, awaited_v, noop_v))
        rows += [
            Row("floor", "nowait hop (`send_nowait`+`receive_nowait`)", nowait_v, "µs"),
            Row("floor", "awaited hop (task → task parked in `receive()`)", awaited_v, "µs"),
            Row("floor", "no-op coroutine call (`await noop()`)", noop_v, "µs"),
        ]

    def multiples(us: float) -> str:
        return (
            f"{us / nowait:.0f}× nowait hop, {us / awaited:.1f}× awaited hop, "
            f"{us / noop:.0f}× no-op call"
        )

    if "W1" in selected:
        s = repeat("W1", wl.w1_throughput, reps, backend)
        proc = col(s, "process_jobs_s")
        ok = statistics.median(proc) >= 100_000
        all_ok &= ok
        per_job = col(s, "process_us_per_job")
        rows += [
            Row("W1 throughput", "end to end: add 20,000 + process, one clock",
                col(s, "e2e_jobs_s"), "jobs/s"),
            Row("W1 throughput", "add 20,000 (one `add_bulk`)", col(s, "add_jobs_s"), "jobs/s"),
            Row("W1 throughput", "process 20,000, concurrency 50", proc, "jobs/s", "",
                "≥ 100,000 jobs/s", ok),
            Row("W1 throughput", "process, per job", per_job, "µs",
                multiples(statistics.median(per_job))),
        ]  # fmt: skip

    if "W2" in selected:
        s = repeat("W2", wl.w2_latency, reps, backend)
        p50 = col(s, "start_p50_us")
        ok = statistics.median(p50) < 50
        all_ok &= ok
        what = f"{wl.W2_SAMPLES:,} samples after {wl.W2_WARMUP} warm-up"
        rows += [
            Row("W2 latency", "add→start p50", p50, "µs", what, "< 50 µs", ok),
            Row("W2 latency", "add→start p99", col(s, "start_p99_us"), "µs"),
            Row("W2 latency", "add→completed p50", col(s, "done_p50_us"), "µs"),
            Row("W2 latency", "add→completed p99", col(s, "done_p99_us"), "µs"),
        ]

    if "W3" in selected:
        s = repeat("W3", wl.w3_delayed(bulk=False), reps, backend)
        p99 = col(s, "late_p99_ms")
        early = col(s, "early")
        ok99 = statistics.median(p99) < 2
        ok_early = max(early) == 0
        all_ok &= ok99 and ok_early
        what = f"{wl.W3_JOBS:,} jobs due in 0–200 ms, one `add` each, concurrency 50"
        rows += [
            Row("W3 delayed", "lateness p50", col(s, "late_p50_ms"), "ms", what),
            Row("W3 delayed", "lateness p99", p99, "ms", "", "< 2 ms", ok99),
            Row("W3 delayed", "lateness max", col(s, "late_max_ms"), "ms"),
            Row("W3 delayed", "early starts", early, "jobs", f"{sum(early):.0f} in all reps",
                "0 in every rep", ok_early),
        ]  # fmt: skip
        s = repeat("W3 bulk", wl.w3_delayed(bulk=True), reps, backend)
        what = "same jobs, one `add_bulk` (extra, no goal)"
        early = col(s, "early")
        rows += [
            Row("W3 via add_bulk", "lateness p50", col(s, "late_p50_ms"), "ms", what),
            Row("W3 via add_bulk", "lateness p99", col(s, "late_p99_ms"), "ms"),
            Row("W3 via add_bulk", "lateness max", col(s, "late_max_ms"), "ms"),
            Row("W3 via add_bulk", "early starts", early, "jobs", f"{sum(early):.0f} in all reps"),
        ]

    if "scaling" in selected:
        sizes = SIZES_QUICK if quick else SIZES_FULL
        per_size: dict[int, list[float]] = {}
        for n in sizes:
            first = repeat(
                f"scaling {size_label(n)} (rep 1, tracemalloc on the fill)",
                wl.scaling(n, measure_memory=True),
                1,
                backend,
            )
            rest = repeat(
                f"scaling {size_label(n)}", wl.scaling(n, measure_memory=False), reps - 1, backend
            )
            s = first + rest
            per_size[n] = col(s, "process_us_per_job")
            label = f"scaling, {size_label(n)} waiting"
            rows.append(Row(label, "process per job (20,000 at concurrency 50)", per_size[n], "µs",
                            multiples(statistics.median(per_size[n]))))  # fmt: skip
            rows.append(Row(label, "memory per waiting job (tracemalloc)",
                            col(s, "bytes_per_waiting_job"), "B"))  # fmt: skip
            fill = col(s, "filler_add_jobs_s")
            if fill:
                rows.append(Row(label, "adding the waiting jobs (`add_bulk`s of ≤ 50k)", fill,
                                "jobs/s"))  # fmt: skip
        lo, hi = sizes[0], sizes[-1]
        ratios = [b / a for a, b in zip(per_size[lo], per_size[hi], strict=True)]
        ok = statistics.median(ratios) <= 1.5
        all_ok &= ok
        rows.append(Row("scaling", f"per-job cost, {size_label(hi)} ÷ {size_label(lo)} waiting",
                        ratios, "×", "rep by rep", "≤ 1.5×", ok))  # fmt: skip
        if quick:
            notes.append("quick run: scaling stops at 100k waiting (the goal names 1M).")

    notes += [
        "Median and min–max over the repetitions; each repetition runs in a fresh event loop "
        "and a fresh Runtime.",
        "Goals are judged on the median, except early starts, judged on every repetition.",
    ]
    if "scaling" in selected:
        notes.append(
            "Scaling memory is measured once per size (first repetition, tracemalloc running "
            "only while the waiting jobs are added); timings of that repetition are taken "
            "after tracemalloc stops."
        )
    machine = machine_line(backend, reps, quick)
    return render(machine, rows, notes), all_ok


def parse_only(text: str | None) -> list[str]:
    if not text:
        return list(WORKLOADS)
    by_lower = {w.lower(): w for w in WORKLOADS}
    out = []
    for item in text.split(","):
        key = item.strip().lower()
        if key not in by_lower:
            raise SystemExit(f"unknown workload {item!r}; choose from {', '.join(WORKLOADS)}")
        out.append(by_lower[key])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 reps; scaling at 10k, 100k")
    parser.add_argument("--only", help="comma-separated: floor,W1,W2,W3,scaling")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--reps", type=int, help="repetitions (default 5, or 2 with --quick)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the table")
    args = parser.parse_args(argv)
    reps = args.reps or (2 if args.quick else 5)
    if reps < 1:
        parser.error("--reps must be at least 1")
    selected = parse_only(args.only)
    t0 = time.perf_counter()
    text, _ok = run(selected, reps, args.backend, args.quick)
    text += f"- Wall time of the run: {time.perf_counter() - t0:.0f} s.\n"
    print(text, end="")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"(written to {args.output})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
